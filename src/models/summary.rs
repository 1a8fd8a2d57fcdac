//! Prints a model the way PyTorch's `print(model)` does, followed by its parameter count; the
//! training stages write it to `architecture.txt`.

use std::fmt;

use tch::nn;

/// A module and its named children, each rendered as `(name): Child(...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleTree {
    repr: String,
    children: Vec<(String, ModuleTree)>,
}

impl ModuleTree {
    /// A module without children, printed verbatim (`ReLU()`).
    pub fn leaf(repr: impl Into<String>) -> Self {
        ModuleTree {
            repr: repr.into(),
            children: Vec::new(),
        }
    }

    /// A container printed as `Name(` + indented children + `)`.
    pub fn node(name: impl Into<String>, children: Vec<(String, ModuleTree)>) -> Self {
        ModuleTree {
            repr: name.into(),
            children,
        }
    }
}

impl fmt::Display for ModuleTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.children.is_empty() {
            return write!(f, "{}", self.repr);
        }
        writeln!(f, "{}(", self.repr)?;
        for (name, child) in &self.children {
            // PyTorch indents every line of a child's repr by two spaces.
            let text = child.to_string().replace('\n', "\n  ");
            writeln!(f, "  ({name}): {text}")?;
        }
        write!(f, ")")
    }
}

/// Trainable parameters of the variables in `stores`.
pub fn parameter_count(stores: &[&nn::VarStore]) -> i64 {
    stores
        .iter()
        .flat_map(|vs| vs.trainable_variables())
        .map(|t| t.numel() as i64)
        .sum()
}

/// The text of `architecture.txt`: the module tree, then `Total parameters: 1,234`.
pub fn architecture_text(tree: &ModuleTree, parameters: i64) -> String {
    format!("{tree}\nTotal parameters: {}\n", thousands(parameters))
}

fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_like_pytorch() {
        let inner = ModuleTree::node(
            "Sequential",
            vec![("relu1".into(), ModuleTree::leaf("ReLU()"))],
        );
        let tree = ModuleTree::node("Net", vec![("feature".into(), inner)]);
        let expected = "Net(\n  (feature): Sequential(\n    (relu1): ReLU()\n  )\n)";
        assert_eq!(tree.to_string(), expected);
        assert!(architecture_text(&tree, 1234567).ends_with("Total parameters: 1,234,567\n"));
    }
}
