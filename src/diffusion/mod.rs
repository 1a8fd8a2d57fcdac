//! Diffusion models' sampling mathematics, independent of any network: noise schedules
//! ([`schedule`]), ancestral DDPM sampling with classifier-free guidance ([`ddpm`]), the DDIM
//! sampler with both timestep conventions in circulation ([`ddim`]), and interpolation between
//! noise vectors ([`interpolate`]). The networks come in as closures `eps(x, t)`, so this module
//! imports no model and no stage.

pub mod ddim;
pub mod ddpm;
pub mod interpolate;
pub mod schedule;

pub use ddim::{Convention, Ddim, DdimError};
pub use schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig};
