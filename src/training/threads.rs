//! The intra-op thread count for CPU training: one thread per physical core, since
//! hyper-threads share the vector units that convolutions saturate.

use std::collections::BTreeSet;

/// Sets libtorch's intra-op threads to the number of physical cores.
pub fn use_physical_cores() {
    tch::set_num_threads(physical_cores() as i32);
}

/// Physical cores from `/proc/cpuinfo` (distinct `physical id`/`core id` pairs), or the logical
/// CPU count where that file is missing or says nothing.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let cores = count_cores(&cpuinfo);
    if cores == 0 {
        logical
    } else {
        cores.min(logical)
    }
}

fn count_cores(cpuinfo: &str) -> usize {
    let mut cores = BTreeSet::new();
    let mut package = "";
    for line in cpuinfo.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "physical id" => package = value.trim(),
            "core id" => {
                cores.insert((package.to_owned(), value.trim().to_owned()));
            }
            _ => {}
        }
    }
    cores.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_cores_not_hyperthreads() {
        let text = "processor: 0\nphysical id: 0\ncore id: 0\n\nprocessor: 1\nphysical id: 0\ncore id: 0\n\n\
                    processor: 2\nphysical id: 0\ncore id: 1\n";
        assert_eq!(count_cores(text), 2);
    }
}
