//! A discrete architecture: per cell type, the edges each node keeps and the op on each.
//! Round-trips through the DARTS text form, the NAS-Bench-201 string form and JSON.
use super::{CellType, DeriveRule, NetworkSpec, OpKind, SearchSpace};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// One kept edge: `op` applied to state `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneEdge {
    pub op: OpKind,
    pub from: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellGenotype {
    /// For each intermediate node, its kept incoming edges.
    pub nodes: Vec<Vec<GeneEdge>>,
    /// States concatenated into the cell output.
    pub concat: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genotype {
    pub normal: CellGenotype,
    /// DARTS reduction cell; absent for single-cell-type spaces (NAS-Bench-201).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce: Option<CellGenotype>,
}

impl Genotype {
    pub fn cell(&self, t: CellType) -> Option<&CellGenotype> {
        match t {
            CellType::Normal => Some(&self.normal),
            CellType::Reduce => self.reduce.as_ref(),
        }
    }

    /// Parse any of the three forms: DARTS text (`Genotype(normal=...)`), NAS-Bench-201
    /// (`|op~0|+|...|`) or JSON (`{"normal": ...}`).
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        if t.starts_with('{') {
            serde_json::from_str(t)
                .map_err(|e| Error::invalid("genotype JSON", short(t), e.to_string()))
        } else if t.starts_with('|') {
            Self::from_nb201(t)
        } else {
            Self::from_darts(t)
        }
    }

    /// Read a genotype from a file (any form), or parse the argument itself when it is not
    /// a file: what `--genotype FILE|STRING` takes.
    pub fn from_arg(arg: &str) -> Result<Self> {
        let path = std::path::Path::new(arg);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            return Self::parse(&text).map_err(|e| Error::bad_file(path, e.to_string()));
        }
        if Self::looks_like_text(arg) {
            return Self::parse(arg);
        }
        Err(Error::bad_file(
            path,
            if path.exists() {
                "not a file (--genotype takes a genotype file or the genotype text)"
            } else {
                "no such genotype file (--genotype takes a file, or the genotype text itself: \
                 Genotype(normal=...), |op~0|+|...|, or JSON)"
            },
        ))
    }

    /// Whether `arg` starts like one of the text forms [`Self::parse`] reads.
    pub fn looks_like_text(arg: &str) -> bool {
        let t = arg.trim_start();
        t.starts_with("Genotype") || t.starts_with('|') || t.starts_with('{')
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Genotype always serialises")
    }

    /// The form native to the space: NAS-Bench-201 string for one cell type, DARTS text
    /// otherwise.
    pub fn to_text(&self) -> String {
        if self.reduce.is_none() && self.normal.is_nb201_shaped() {
            self.to_nb201()
        } else {
            self.to_darts()
        }
    }

    /// `Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), ...)`.
    pub fn to_darts(&self) -> String {
        let mut s = String::from("Genotype(normal=");
        write_darts_cell(&mut s, &self.normal, "normal");
        if let Some(r) = &self.reduce {
            s.push_str(", reduce=");
            write_darts_cell(&mut s, r, "reduce");
        }
        s.push(')');
        s
    }

    /// `|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...|`.
    pub fn to_nb201(&self) -> String {
        self.normal
            .nodes
            .iter()
            .map(|node| {
                let edges: String = node
                    .iter()
                    .map(|e| format!("{}~{}|", e.op, e.from))
                    .collect();
                format!("|{edges}")
            })
            .collect::<Vec<_>>()
            .join("+")
    }

    pub fn from_nb201(text: &str) -> Result<Self> {
        let bad = |why: String| Error::invalid("NAS-Bench-201 genotype", short(text), why);
        let mut nodes = Vec::new();
        for (i, part) in text.trim().split('+').enumerate() {
            let inner = part
                .strip_prefix('|')
                .and_then(|p| p.strip_suffix('|'))
                .ok_or_else(|| bad(format!("node {} must be written |op~j|...|", i + 1)))?;
            let mut node = Vec::new();
            for edge in inner.split('|') {
                let (op, from) = edge
                    .split_once('~')
                    .ok_or_else(|| bad(format!("edge '{edge}' must be op~index")))?;
                let from = from
                    .parse()
                    .map_err(|_| bad(format!("edge '{edge}': '{from}' is not a state index")))?;
                node.push(GeneEdge {
                    op: op.parse()?,
                    from,
                });
            }
            nodes.push(node);
        }
        let last = nodes.len();
        Ok(Genotype {
            normal: CellGenotype {
                nodes,
                concat: vec![last],
            },
            reduce: None,
        })
    }

    pub fn from_darts(text: &str) -> Result<Self> {
        let mut p = darts_text::Parser::new(text);
        let fields = p.genotype()?;
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let cell = |name: &str| -> Result<Option<CellGenotype>> {
            let Some(darts_text::Value::Edges(edges)) = get(name) else {
                return Ok(None);
            };
            let concat = match get(&format!("{name}_concat")) {
                Some(darts_text::Value::Ints(c)) => c,
                _ => {
                    return Err(Error::invalid(
                        "DARTS genotype",
                        short(text),
                        format!("missing {name}_concat"),
                    ))
                }
            };
            if edges.len() % 2 != 0 {
                return Err(Error::invalid(
                    "DARTS genotype",
                    short(text),
                    format!(
                        "{name} has {} edges; DARTS cells keep 2 per node",
                        edges.len()
                    ),
                ));
            }
            let nodes = edges.chunks(2).map(|c| c.to_vec()).collect();
            Ok(Some(CellGenotype { nodes, concat }))
        };
        let normal = cell("normal")?
            .ok_or_else(|| Error::invalid("DARTS genotype", short(text), "missing normal=[...]"))?;
        Ok(Genotype {
            normal,
            reduce: cell("reduce")?,
        })
    }

    /// Check that this genotype is a sub-architecture of `space`; the error says what does
    /// not fit.
    pub fn validate(&self, space: &SearchSpace) -> Result<()> {
        for &t in space.network.cell_types() {
            let cell = self.cell(t).ok_or_else(|| {
                Error::invalid(
                    "genotype",
                    short(&self.to_text()),
                    format!("a {} cell for space '{}'", t.name(), space.name),
                )
            })?;
            cell.validate(space, t)?;
        }
        if matches!(space.network, NetworkSpec::Nb201 { .. }) && self.reduce.is_some() {
            return Err(Error::invalid(
                "genotype",
                "reduce cell",
                format!(
                    "no reduction cell: space '{}' has one cell type",
                    space.name
                ),
            ));
        }
        Ok(())
    }
}

impl CellGenotype {
    /// How many kept edges carry `op`.
    pub fn count(&self, op: OpKind) -> usize {
        self.nodes.iter().flatten().filter(|e| e.op == op).count()
    }

    fn is_nb201_shaped(&self) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .all(|(i, n)| n.len() == i + 1 && n.iter().enumerate().all(|(j, e)| e.from == j))
            && self.concat == [self.nodes.len()]
    }

    fn validate(&self, space: &SearchSpace, t: CellType) -> Result<()> {
        let cell = &space.cell;
        let field = |what: &str| format!("genotype {} cell {what}", t.name());
        if self.nodes.len() != cell.nodes {
            return Err(Error::invalid(
                field("nodes"),
                self.nodes.len(),
                format!("{} nodes as in space '{}'", cell.nodes, space.name),
            ));
        }
        if self.concat != cell.concat {
            return Err(Error::invalid(
                field("concat"),
                format!("{:?}", self.concat),
                format!("{:?} as in space '{}'", cell.concat, space.name),
            ));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let to = cell.inputs + i;
            let expected = match cell.derive {
                DeriveRule::TopK { keep } => keep,
                DeriveRule::Argmax => to,
            };
            if node.len() != expected {
                return Err(Error::invalid(
                    field(&format!("node {to}")),
                    format!("{} edges", node.len()),
                    format!("{expected} incoming edges ({} derivation)", cell.derive),
                ));
            }
            for (k, e) in node.iter().enumerate() {
                if e.from >= to {
                    return Err(Error::invalid(
                        field(&format!("node {to} input")),
                        e.from,
                        format!("a state index below {to}"),
                    ));
                }
                if node[..k].iter().any(|o| o.from == e.from) {
                    return Err(Error::invalid(
                        field(&format!("node {to} input")),
                        e.from,
                        "each input state at most once per node",
                    ));
                }
                if space.index_of(e.op).is_none() {
                    return Err(Error::invalid(
                        field("operation"),
                        e.op,
                        format!(
                            "one of the space's ops: {}",
                            space
                                .ops
                                .iter()
                                .map(|o| o.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn write_darts_cell(s: &mut String, cell: &CellGenotype, name: &str) {
    s.push('[');
    let edges: Vec<String> = cell
        .nodes
        .iter()
        .flatten()
        .map(|e| format!("('{}', {})", e.op, e.from))
        .collect();
    s.push_str(&edges.join(", "));
    s.push(']');
    let contiguous = cell.concat.windows(2).all(|w| w[1] == w[0] + 1) && !cell.concat.is_empty();
    if contiguous {
        let _ = write!(
            s,
            ", {name}_concat=range({}, {})",
            cell.concat[0],
            cell.concat.last().unwrap() + 1
        );
    } else {
        let list: Vec<String> = cell.concat.iter().map(|c| c.to_string()).collect();
        let _ = write!(s, ", {name}_concat=[{}]", list.join(", "));
    }
}

fn short(t: &str) -> String {
    let t = t.trim();
    if t.chars().count() > 60 {
        format!("'{}...'", t.chars().take(60).collect::<String>())
    } else {
        format!("'{t}'")
    }
}

/// A small recursive-descent parser for the Python repr of a DARTS `Genotype` namedtuple.
mod darts_text {
    use super::{short, GeneEdge};
    use crate::{Error, Result};

    #[derive(Debug, Clone)]
    pub enum Value {
        Edges(Vec<GeneEdge>),
        Ints(Vec<usize>),
    }

    pub struct Parser<'a> {
        src: &'a str,
        pos: usize,
    }

    impl<'a> Parser<'a> {
        pub fn new(src: &'a str) -> Self {
            Parser { src, pos: 0 }
        }

        fn err(&self, expected: &str) -> Error {
            let rest: String = self.src[self.pos..].chars().take(20).collect();
            Error::invalid(
                "DARTS genotype",
                short(self.src),
                format!(
                    "expected {expected} at character {} (found '{rest}')",
                    self.pos
                ),
            )
        }

        fn skip_ws(&mut self) {
            let rest = &self.src[self.pos..];
            self.pos += rest.len() - rest.trim_start().len();
        }

        fn eat(&mut self, tok: &str) -> bool {
            self.skip_ws();
            if self.src[self.pos..].starts_with(tok) {
                self.pos += tok.len();
                true
            } else {
                false
            }
        }

        fn expect(&mut self, tok: &str) -> Result<()> {
            if self.eat(tok) {
                Ok(())
            } else {
                Err(self.err(&format!("'{tok}'")))
            }
        }

        fn ident(&mut self) -> Result<String> {
            self.skip_ws();
            let rest = &self.src[self.pos..];
            let n = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if n == 0 {
                return Err(self.err("a name"));
            }
            self.pos += n;
            Ok(rest[..n].to_string())
        }

        fn int(&mut self) -> Result<usize> {
            self.skip_ws();
            let rest = &self.src[self.pos..];
            let n = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let v = rest[..n].parse().map_err(|_| self.err("an integer"))?;
            self.pos += n;
            Ok(v)
        }

        fn string(&mut self) -> Result<String> {
            self.skip_ws();
            let quote = match self.src[self.pos..].chars().next() {
                Some(q @ ('\'' | '"')) => q,
                _ => return Err(self.err("a quoted op name")),
            };
            self.pos += 1;
            let rest = &self.src[self.pos..];
            let end = rest
                .find(quote)
                .ok_or_else(|| self.err("a closing quote"))?;
            self.pos += end + 1;
            Ok(rest[..end].to_string())
        }

        /// `Genotype(key=value, ...)` -> the key/value pairs.
        pub fn genotype(&mut self) -> Result<Vec<(String, Value)>> {
            self.expect("Genotype")?;
            self.expect("(")?;
            let mut fields = Vec::new();
            while !self.eat(")") {
                let key = self.ident()?;
                self.expect("=")?;
                fields.push((key, self.value()?));
                if !self.eat(",") {
                    self.expect(")")?;
                    break;
                }
            }
            self.skip_ws();
            if self.pos != self.src.len() {
                return Err(self.err("the end of the genotype"));
            }
            Ok(fields)
        }

        /// `[('op', 0), ...]`, `[2, 3]` or `range(2, 6)`.
        fn value(&mut self) -> Result<Value> {
            if self.eat("range") {
                self.expect("(")?;
                let a = self.int()?;
                self.expect(",")?;
                let b = self.int()?;
                self.expect(")")?;
                return Ok(Value::Ints((a..b).collect()));
            }
            self.expect("[")?;
            self.skip_ws();
            if self.src[self.pos..].starts_with('(') {
                let mut edges = Vec::new();
                while self.eat("(") {
                    let op = self.string()?.parse()?;
                    self.expect(",")?;
                    let from = self.int()?;
                    self.expect(")")?;
                    edges.push(GeneEdge { op, from });
                    if !self.eat(",") {
                        break;
                    }
                }
                self.expect("]")?;
                Ok(Value::Edges(edges))
            } else {
                let mut ints = Vec::new();
                while !self.eat("]") {
                    ints.push(self.int()?);
                    if !self.eat(",") {
                        self.expect("]")?;
                        break;
                    }
                }
                Ok(Value::Ints(ints))
            }
        }
    }
}
