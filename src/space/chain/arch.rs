//! A discrete chain architecture: one choice per searchable layer. Its text form is the
//! choice names in layer order, comma-separated (`mbconv_k3_e6,skip,...`).
use super::choice::Choice;
use super::spec::ChainSpace;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChainArch {
    pub layers: Vec<Choice>,
}

impl ChainArch {
    /// Every searchable layer set to `choice` (e.g. MobileNetV2: all `mbconv_k3_e6`).
    pub fn uniform(space: &ChainSpace, choice: Choice) -> Result<Self> {
        let arch = ChainArch {
            layers: vec![choice; space.num_searchable()],
        };
        arch.validate(space)?;
        Ok(arch)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let layers = text
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<Choice>()
                    .map_err(|e| Error::invalid("architecture", s.trim(), e))
            })
            .collect::<Result<_>>()?;
        Ok(ChainArch { layers })
    }

    /// Whether a `--genotype` argument is a chain architecture's text rather than a file.
    pub fn looks_like_text(arg: &str) -> bool {
        let t = arg.trim_start();
        t.starts_with("mbconv_k") || t.starts_with("skip")
    }

    /// A `--genotype` argument: a file holding the text form (a chain search's
    /// `genotype.txt`) or the text itself.
    pub fn from_arg(arg: &str) -> Result<Self> {
        let path = std::path::Path::new(arg);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            return Self::parse(text.trim()).map_err(|e| Error::bad_file(path, e.to_string()));
        }
        if Self::looks_like_text(arg) {
            return Self::parse(arg);
        }
        Err(Error::bad_file(
            path,
            "no such architecture file (--genotype takes a file such as a chain search's genotype.txt, or the choices themselves: mbconv_k3_e6,skip,...)",
        ))
    }

    pub fn to_text(&self) -> String {
        self.names().join(",")
    }

    /// The JSON form: the choice names as an array of strings.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.names()).expect("strings serialise")
    }

    fn names(&self) -> Vec<String> {
        self.layers.iter().map(|c| c.name()).collect()
    }

    /// One choice per searchable layer, each one that layer allows.
    pub fn validate(&self, space: &ChainSpace) -> Result<()> {
        let n = space.num_searchable();
        if self.layers.len() != n {
            return Err(Error::invalid(
                "architecture",
                format!("{} layer choices", self.layers.len()),
                format!("one per searchable layer of '{}' ({n})", space.name),
            ));
        }
        let plan = space.plan((1, 1));
        for layer in plan.iter().filter(|l| l.searchable.is_some()) {
            let i = layer.searchable.expect("filtered");
            let c = self.layers[i];
            if !layer.choices.contains(&c) {
                let allowed: Vec<String> = layer.choices.iter().map(|c| c.name()).collect();
                return Err(Error::invalid(
                    format!("architecture layer {i}"),
                    c,
                    format!("one of {}", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// The alpha column of every layer's choice.
    pub fn columns(&self, space: &ChainSpace) -> Vec<usize> {
        let choices = space.choices();
        self.layers
            .iter()
            .map(|c| {
                choices
                    .iter()
                    .position(|x| x == c)
                    .expect("a validated architecture")
            })
            .collect()
    }
}

impl std::fmt::Display for ChainArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}
