//! Reads the text `print(model)` gives, pasted as is: one module per line, `(name): Layer(args)`,
//! containers opened by `Name(` at the end of a line and closed by a lone `)`.
//!
//! Every PyTorch version from 1.x to 2.13 is accepted: `ReLU(inplace)` and `ReLU(inplace=True)`,
//! `GELU(approximate=none)` and `GELU(approximate='none')`, norms with or without `bias=`.
//! Indentation is not significant (parentheses are), so a printout re-indented by a PDF or an
//! editor still reads. Errors name the line and column.

use std::collections::BTreeMap;

use super::call::{parse_arguments, Call};
use super::error::{ErrorKind, Location, NetworkError};
use super::spec::{join, Child, Module, Network};
use super::vocabulary::{layer, unknown_layer, CONTAINER_CLASSES};
use super::Described;

/// Parses a printout into a network and the location of each module's line.
pub fn parse(text: &str) -> Result<Described, NetworkError> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim_end()))
        .filter(|(_, line)| !line.trim().is_empty())
        .collect();
    let Some(&(number, first)) = lines.first() else {
        return Err(NetworkError::at(
            None,
            ErrorKind::Syntax("the printout is empty".to_owned()),
        ));
    };
    let mut reader = Reader {
        lines,
        next: 1,
        locations: BTreeMap::new(),
    };
    let (column, module_text) = split_indent(first);
    let root = reader.module(module_text, number, column, "")?;
    if let Some(&(number, line)) = reader.lines.get(reader.next) {
        let (column, _) = split_indent(line);
        return Err(NetworkError::at(
            Some(Location {
                line: number,
                column,
            }),
            ErrorKind::Syntax("text after the network's closing `)`".to_owned()),
        ));
    }
    Ok(Described {
        network: Network { root },
        locations: reader.locations,
    })
}

/// The 1-based column of a line's first non-blank character, and the text from there.
fn split_indent(line: &str) -> (usize, &str) {
    let text = line.trim_start();
    (line.chars().count() - text.chars().count() + 1, text)
}

struct Reader<'a> {
    /// The non-blank lines with their 1-based numbers.
    lines: Vec<(usize, &'a str)>,
    /// Index into `lines` of the next line to read.
    next: usize,
    locations: BTreeMap<String, Location>,
}

impl Reader<'_> {
    /// The module written as `text` (`Conv2d(...)` or `Sequential(`) at `line`:`column`,
    /// reading its children's lines when it opens a container.
    fn module(
        &mut self,
        text: &str,
        line: usize,
        column: usize,
        path: &str,
    ) -> Result<Module, NetworkError> {
        let at = Location { line, column };
        let class_length = text
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(text.len());
        let (class, rest) = text.split_at(class_length);
        if class.is_empty() {
            return Err(NetworkError::at(
                Some(at),
                ErrorKind::Syntax(format!("expected a module name, found `{text}`")),
            ));
        }
        // `torch.nn.modules.conv.Conv2d` would be unusual, but the class is the last part.
        let class = class.rsplit('.').next().unwrap_or(class);
        self.locations.insert(path.to_owned(), at);
        if rest == "(" {
            return self.container(class, at, path);
        }
        let arguments = rest
            .strip_prefix('(')
            .and_then(|inner| inner.strip_suffix(')'))
            .ok_or_else(|| {
                NetworkError::at(
                    Some(Location {
                        line,
                        column: column + class_length,
                    }),
                    ErrorKind::Syntax(format!(
                        "expected `{class}(arguments)` or `{class}(` opening a container"
                    )),
                )
            })?;
        let first_argument_column = column + class_length + 1;
        if arguments.trim().is_empty() && CONTAINER_CLASSES.contains(&class) {
            return Ok(Module::Container {
                class: class.to_owned(),
                children: Vec::new(),
            });
        }
        let (positional, keyword) = parse_arguments(arguments, line, first_argument_column)?;
        let call = Call {
            class: class.to_owned(),
            location: Some(at),
            positional,
            keyword,
        };
        if super::vocabulary::class_named(class).is_none_or(|known| known != class) {
            // The printout spells classes exactly; `Conv2D` is a typo, not a case variant.
            return Err(unknown_layer(&call));
        }
        layer(&call).map(Module::Layer)
    }

    /// The children of a container opened at `at`, up to its closing `)`.
    fn container(&mut self, class: &str, at: Location, path: &str) -> Result<Module, NetworkError> {
        let mut children = Vec::new();
        loop {
            let Some(&(number, line)) = self.lines.get(self.next) else {
                return Err(NetworkError::at(
                    Some(at),
                    ErrorKind::Syntax(format!("`{class}(` is never closed by a `)` line")),
                ));
            };
            self.next += 1;
            let (column, text) = split_indent(line);
            if text == ")" {
                return Ok(Module::Container {
                    class: class.to_owned(),
                    children,
                });
            }
            let child_at = Location {
                line: number,
                column,
            };
            let Some((name, module_text)) = text
                .strip_prefix('(')
                .and_then(|rest| rest.split_once("): "))
            else {
                return Err(NetworkError::at(
                    Some(child_at),
                    ErrorKind::Syntax(format!(
                        "expected `(name): Module(...)` or the `)` closing `{class}`, found `{text}`"
                    )),
                ));
            };
            if children.iter().any(|child: &Child| child.name == name) {
                return Err(NetworkError::at(
                    Some(child_at),
                    ErrorKind::Syntax(format!("`{class}` has two children named `{name}`")),
                ));
            }
            let module_column = column + name.chars().count() + 4;
            let module = self.module(
                module_text.trim_start(),
                number,
                module_column,
                &join(path, name),
            )?;
            children.push(Child {
                name: name.to_owned(),
                module,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::spec::Layer;

    const DCGAN_D_HEAD: &str = "Discriminator(
  (layer1): Sequential(
    (0): Conv2d(3, 64, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), bias=False)
    (1): LeakyReLU(negative_slope=0.2, inplace=True)
  )
  (layer2): Sequential(
    (0): Conv2d(64, 128, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), bias=False)
    (1): BatchNorm2d(128, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (2): Dropout(p=0.5, inplace=False)
  )
)
";

    #[test]
    fn reads_a_printout_and_prints_it_back_in_the_2_13_format() {
        let described = parse(DCGAN_D_HEAD).unwrap();
        let printed = described.network.tree().to_string();
        let expected = DCGAN_D_HEAD.trim_end().replace(
            "affine=True, track_running_stats",
            "affine=True, bias=True, track_running_stats",
        );
        assert_eq!(printed, expected);
        assert_eq!(
            described.locations["layer2.1"],
            Location {
                line: 8,
                column: 10
            }
        );
        let names: Vec<String> = described
            .network
            .state_dict()
            .into_iter()
            .map(|entry| entry.name)
            .collect();
        assert_eq!(
            names,
            [
                "layer1.0.weight",
                "layer2.0.weight",
                "layer2.1.weight",
                "layer2.1.bias",
                "layer2.1.running_mean",
                "layer2.1.running_var",
                "layer2.1.num_batches_tracked"
            ]
        );
    }

    #[test]
    fn pytorch_1_x_spellings_read_as_the_2_x_ones() {
        let old = parse(
            "Sequential(\n  (0): ReLU(inplace)\n  (1): GELU(approximate=none)\n  (2): Dropout(p=0.5)\n)",
        )
        .unwrap();
        let new = parse(
            "Sequential(\n  (0): ReLU(inplace=True)\n  (1): GELU(approximate='none')\n  (2): Dropout(p=0.5, inplace=False)\n)",
        )
        .unwrap();
        assert_eq!(old.network, new.network);
        let Module::Container { children, .. } = &new.network.root else {
            panic!("not a container")
        };
        assert!(matches!(
            children[0].module,
            Module::Layer(Layer::Activation { inplace: true, .. })
        ));
    }

    #[test]
    fn errors_point_at_the_line_and_column() {
        let error =
            parse("Net(\n  (fc): Linaer(in_features=3, out_features=4, bias=True)\n)").unwrap_err();
        assert_eq!(error.location, Some(Location { line: 2, column: 9 }));
        assert_eq!(error.to_string(), "unknown layer `Linaer`");
        assert_eq!(error.help().as_deref(), Some("did you mean `Linear`?"));
        let error = parse("Net(\n  (c): Conv2d(3, 4, kernel_size=3, strid=2)\n)").unwrap_err();
        assert_eq!(
            error.location,
            Some(Location {
                line: 2,
                column: 36
            })
        );
        assert_eq!(error.help().as_deref(), Some("did you mean `stride`?"));
        let error = parse("Net(\n  (c): ReLU()\n").unwrap_err();
        assert!(error.to_string().contains("never closed"), "{error}");
        let rendered = error.render("net.txt", "Net(\n  (c): ReLU()\n");
        assert!(rendered.contains("--> net.txt:1:1"), "{rendered}");
    }
}
