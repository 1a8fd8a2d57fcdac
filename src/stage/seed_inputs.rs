//! How a stage planned across seeds ([`super::StageShape::across_seeds`]) names its inputs: the
//! planner writes the names and the report reads the seed back, so the spelling lives below both.

/// The name under which a stage planned across seeds receives input `input` of seed `seed`.
pub fn seed_input_name(input: &str, seed: u64) -> String {
    format!("{input}[seed={seed}]")
}

/// The input name and the seed of a [`seed_input_name`]; `None` for any other name.
pub fn split_seed_input_name(name: &str) -> Option<(&str, u64)> {
    let (input, rest) = name.split_once("[seed=")?;
    let seed = rest.strip_suffix(']')?.parse().ok()?;
    Some((input, seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_input_names_round_trip() {
        assert_eq!(seed_input_name("eval", 12), "eval[seed=12]");
        assert_eq!(split_seed_input_name("eval[seed=12]"), Some(("eval", 12)));
        assert_eq!(split_seed_input_name("eval"), None);
        assert_eq!(split_seed_input_name("eval[seed=x]"), None);
    }
}
