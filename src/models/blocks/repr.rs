//! Python's spelling of the values that appear in PyTorch module reprs, so printouts can be
//! compared with PyTorch's character for character.

/// `repr(float)` in Python: the shortest round-tripping digits, scientific notation below 1e-4
/// and from 1e16 (`1e-05`, `0.001`, `0.2`, `1.0`).
pub fn py_float(value: f64) -> String {
    if value == 0.0 || (1e-4..1e16).contains(&value.abs()) {
        let text = format!("{value}");
        if text.contains('.') || text.contains("inf") || text.contains("NaN") {
            text
        } else {
            format!("{text}.0")
        }
    } else {
        // Rust's `{:e}` gives `1e-5` / `1.5e-7`; Python pads the exponent to two digits.
        let text = format!("{value:e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) => {
                let (sign, digits) = match exponent.strip_prefix('-') {
                    Some(digits) => ('-', digits),
                    None => ('+', exponent),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => text,
        }
    }
}

/// `True` / `False`.
pub fn py_bool(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}

/// A Python tuple of integers: `(3, 5)`, and `(8192,)` for one element.
pub fn tuple(values: &[i64]) -> String {
    let items: Vec<String> = values.iter().map(i64::to_string).collect();
    match items.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", items.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python() {
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(1e-3), "0.001");
        assert_eq!(py_float(0.2), "0.2");
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.0), "0.0");
        assert_eq!(py_float(1e-12), "1e-12");
        assert_eq!(py_float(2.5e-7), "2.5e-07");
    }
}
