//! `supernet inspect` of a chain space: its choices, how many architectures it holds, every
//! layer's cost per choice, and the largest and smallest networks (or one architecture's).
//! Computed from the plain data by the exact cost model (tested against built networks).
use crate::space::chain::{
    arch_cost, elastic_supernet_params, extreme_arch, fixed_cost, layer_cost, num_architectures,
    supernet_cost, ChainArch, ChainSpace, Cost, ImageShape, WeightSharing,
};
use std::fmt;

pub struct ChainSummary {
    pub space: ChainSpace,
    pub input: ImageShape,
    pub architecture: Option<ChainArch>,
}

fn short(v: u64) -> String {
    match v {
        v if v >= 10_000_000 => format!("{:.1}M", v as f64 / 1e6),
        v if v >= 1_000_000 => format!("{:.2}M", v as f64 / 1e6),
        v if v >= 10_000 => format!("{:.1}k", v as f64 / 1e3),
        v => v.to_string(),
    }
}

fn cost_line(f: &mut fmt::Formatter<'_>, label: &str, c: Cost) -> fmt::Result {
    writeln!(
        f,
        "{label:<16}{} parameters ({:.3} M), {} multiply-adds per image ({:.1} M)",
        c.params,
        c.params as f64 / 1e6,
        c.macs,
        c.macs as f64 / 1e6
    )
}

impl fmt::Display for ChainSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.space;
        let i = &self.input;
        writeln!(
            f,
            "chain space '{}': {} stages, {} searchable layers",
            s.name,
            s.network.stages.len(),
            s.num_searchable()
        )?;
        writeln!(
            f,
            "input           {}x{}x{}, {} classes",
            i.channels, i.hw.0, i.hw.1, i.classes
        )?;
        let names: Vec<String> = s.choices().iter().map(|c| c.name()).collect();
        writeln!(f, "choices         {}", names.join(", "))?;
        match num_architectures(s) {
            Some(n) => writeln!(f, "architectures   {n} ({:.2e})", n as f64)?,
            None => writeln!(f, "architectures   more than 2^128")?,
        }
        if let Some(arch) = &self.architecture {
            writeln!(f, "architecture    {arch}")?;
            cost_line(f, "network", arch_cost(s, arch, *i))?;
        } else {
            cost_line(f, "supernet", supernet_cost(s, *i))?;
            // Elastic weights hold one largest block per layer (no multiply-adds of their
            // own: a forward runs one choice).
            if WeightSharing::Elastic.check(s).is_ok() {
                let p = elastic_supernet_params(s, *i);
                writeln!(
                    f,
                    "{:<16}{p} parameters ({:.3} M) with elastic weights (--weight-sharing elastic)",
                    "",
                    p as f64 / 1e6
                )?;
            }
        }
        for (label, largest) in [("largest", true), ("smallest", false)] {
            let arch = extreme_arch(s, *i, largest);
            cost_line(f, label, arch_cost(s, &arch, *i))?;
            writeln!(f, "{:<16}{arch}", "")?;
        }
        cost_line(f, "fixed parts", fixed_cost(s, *i))?;
        writeln!(
            f,
            "per layer       parameters / multiply-adds of each choice"
        )?;
        for (n, l) in s.plan(i.hw).iter().enumerate() {
            let what = match l.searchable {
                Some(r) => format!("row {r}"),
                None => "fixed".to_string(),
            };
            write!(
                f,
                "  layer {n:<3} stage {} {what:<7} {}->{} stride {} at {}x{} {}{}:",
                l.stage,
                l.c_in,
                l.c_out,
                l.stride,
                l.hw.0,
                l.hw.1,
                l.act.name(),
                if l.se { " +se" } else { "" }
            )?;
            for &c in &l.choices {
                let cost = layer_cost(l, c);
                write!(f, " {c} {}/{}", short(cost.params), short(cost.macs))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
