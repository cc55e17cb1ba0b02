//! Reading and writing a [`RunLog`] as HDF5 (layout documented in README.md).
use super::image;
use super::{
    AlphaRecord, Column, EpochRecord, RunLog, RunMeta, StepRecord, Table, FORMAT_VERSION,
    TABLE_ROOTS, TOOL,
};
use crate::{Error, Result};
use hdf5::types::VarLenUnicode;
use std::path::Path;

/// Write `log` to `path` atomically: built in memory, then a temporary file beside it,
/// fsync, rename.
pub fn write_run(log: &RunLog, path: &Path) -> Result<()> {
    let bytes = to_bytes(log)?;
    crate::fs::write_atomic(path, &bytes)
}

/// The run file of `log`, as bytes.
pub fn to_bytes(log: &RunLog) -> Result<Vec<u8>> {
    let file = image::create()?;
    fill(&file, log)?;
    image::to_bytes(&file)
}

/// An HDF5 file of `tables` alone (attribute `tool`; each table a group, one dataset per
/// column), as bytes: a sweep's results.
pub fn tables_to_bytes(tables: &[Table]) -> Result<Vec<u8>> {
    let file = image::create()?;
    str_attr(&file, "tool", TOOL)?;
    for t in tables {
        write_table(&file, t)?;
    }
    image::to_bytes(&file)
}

fn fill(file: &hdf5::File, log: &RunLog) -> Result<()> {
    let m = &log.meta;
    str_attr(file, "tool", TOOL)?;
    file.new_attr::<u32>()
        .create("format_version")?
        .write_scalar(&FORMAT_VERSION)?;
    str_attr(file, "kind", &m.kind)?;
    str_attr(file, "config", &m.config)?;
    str_attr(file, "space", &m.space)?;
    str_attr(file, "device", &m.device)?;
    str_attr(file, "supernet_version", &m.supernet_version)?;
    str_attr(file, "libtorch_version", &m.libtorch_version)?;
    str_attr(file, "hdf5_version", &m.hdf5_version)?;
    file.new_attr::<u64>()
        .create("seed")?
        .write_scalar(&m.seed)?;
    file.new_attr::<u64>()
        .create("steps_per_epoch")?
        .write_scalar(&m.steps_per_epoch)?;
    file.new_attr::<u64>()
        .create("classes")?
        .write_scalar(&m.classes)?;
    strings(file, "ops", &m.ops)?;
    strings(file, "edges", &m.edges)?;
    strings(file, "cell_types", &m.cell_types)?;

    let g = file.create_group("steps")?;
    let s = &log.steps;
    column(&g, "step", s.iter().map(|r| r.step))?;
    column(&g, "epoch", s.iter().map(|r| r.epoch))?;
    column(&g, "train_loss", s.iter().map(|r| r.train_loss))?;
    column(&g, "train_acc", s.iter().map(|r| r.train_acc))?;
    column(&g, "val_loss", s.iter().map(|r| r.val_loss))?;
    column(&g, "val_acc", s.iter().map(|r| r.val_acc))?;
    column(&g, "lr", s.iter().map(|r| r.lr))?;
    column(&g, "grad_norm", s.iter().map(|r| r.grad_norm))?;
    column(&g, "seconds", s.iter().map(|r| r.seconds))?;

    let g = file.create_group("alphas")?;
    let a = &log.alphas;
    column(&g, "step", a.iter().map(|r| r.step))?;
    column(&g, "epoch", a.iter().map(|r| r.epoch))?;
    let (e, k) = (m.edges.len(), m.ops.len());
    cube(
        &g,
        "normal",
        a.iter().map(|r| r.normal.as_slice()),
        a.len(),
        e,
        k,
    )?;
    if m.cell_types.iter().any(|t| t == "reduce") {
        cube(
            &g,
            "reduce",
            a.iter().map(|r| r.reduce.as_deref().unwrap_or(&[])),
            a.len(),
            e,
            k,
        )?;
    }
    // PC-DARTS edge normalisation: `[records, edges]` per cell type, only in runs with betas.
    for (t, betas) in [
        (
            "normal",
            a.iter()
                .map(|r| r.normal_betas.as_deref())
                .collect::<Vec<_>>(),
        ),
        (
            "reduce",
            a.iter().map(|r| r.reduce_betas.as_deref()).collect(),
        ),
    ] {
        if betas.iter().any(Option::is_some) {
            let flat: Vec<f32> = betas
                .iter()
                .flat_map(|b| b.unwrap_or(&[]))
                .copied()
                .collect();
            let arr = ndarray::Array2::from_shape_vec((a.len(), e), flat)
                .map_err(|e| Error::Other(format!("beta records of inconsistent size: {e}")))?;
            g.new_dataset_builder()
                .with_data(&arr)
                .create(format!("betas_{t}").as_str())?;
        }
    }

    let g = file.create_group("epochs")?;
    let ep = &log.epochs;
    column(&g, "epoch", ep.iter().map(|r| r.epoch))?;
    column(&g, "train_loss", ep.iter().map(|r| r.train_loss))?;
    column(&g, "train_acc", ep.iter().map(|r| r.train_acc))?;
    column(&g, "val_loss", ep.iter().map(|r| r.val_loss))?;
    column(&g, "val_acc", ep.iter().map(|r| r.val_acc))?;
    column(&g, "lr", ep.iter().map(|r| r.lr))?;
    column(&g, "seconds", ep.iter().map(|r| r.seconds))?;
    strings(
        &g,
        "genotype",
        &ep.iter().map(|r| r.genotype.clone()).collect::<Vec<_>>(),
    )?;
    if ep.iter().any(|r| r.hessian_eigenvalue.is_some()) {
        column(
            &g,
            "hessian_eigenvalue",
            ep.iter().map(|r| r.hessian_eigenvalue.unwrap_or(f64::NAN)),
        )?;
    }

    if let Some((text, json)) = &log.genotype {
        let g = file.create_group("genotype")?;
        str_attr(&g, "text", text)?;
        str_attr(&g, "json", json)?;
        if let Some(reason) = &log.stop_reason {
            str_attr(&g, "stop_reason", reason)?;
        }
    }
    for t in &log.tables {
        write_table(file, t)?;
    }
    Ok(())
}

/// Read a run file back; errors say which file and what is missing.
pub fn read_run(path: &Path) -> Result<RunLog> {
    if !path.is_file() {
        return Err(Error::bad_file(
            path,
            "no run file here (expected run.h5 written by `supernet search`)",
        ));
    }
    let bad = |what: String| Error::bad_file(path, what);
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = image::open(&bytes).map_err(|e| bad(e.to_string()))?;
    let tool = read_str_attr(&file, "tool")
        .map_err(|_| bad("not a supernet run file (no 'tool' attribute)".into()))?;
    if tool != TOOL {
        return Err(bad(format!("written by '{tool}', not by supernet")));
    }
    let version: u32 = file.attr("format_version")?.read_scalar()?;
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "run file format {version}; this supernet reads format {FORMAT_VERSION}"
        )));
    }
    let need = |name: &str| -> Result<hdf5::Dataset> {
        file.dataset(name)
            .map_err(|_| bad(format!("missing dataset '/{name}'")))
    };
    let col_f64 = |name: &str| -> Result<Vec<f64>> { Ok(need(name)?.read_raw::<f64>()?) };
    let col_u64 = |name: &str| -> Result<Vec<u64>> { Ok(need(name)?.read_raw::<u64>()?) };
    let col_u32 = |name: &str| -> Result<Vec<u32>> { Ok(need(name)?.read_raw::<u32>()?) };
    let meta = RunMeta {
        kind: read_str_attr(&file, "kind").unwrap_or_else(|_| "search".into()),
        config: read_str_attr(&file, "config")?,
        space: read_str_attr(&file, "space")?,
        seed: file.attr("seed")?.read_scalar()?,
        device: read_str_attr(&file, "device")?,
        supernet_version: read_str_attr(&file, "supernet_version")?,
        libtorch_version: read_str_attr(&file, "libtorch_version")?,
        hdf5_version: read_str_attr(&file, "hdf5_version")?,
        ops: read_strings(&need("ops")?)?,
        edges: read_strings(&need("edges")?)?,
        cell_types: read_strings(&need("cell_types")?)?,
        steps_per_epoch: file.attr("steps_per_epoch")?.read_scalar()?,
        // Written since format 1 files recorded it; 0: not recorded.
        classes: file
            .attr("classes")
            .and_then(|a| a.read_scalar())
            .unwrap_or(0),
    };

    let step = col_u64("steps/step")?;
    let epoch = col_u32("steps/epoch")?;
    let cols: Vec<Vec<f64>> = [
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "grad_norm",
        "seconds",
    ]
    .iter()
    .map(|c| col_f64(&format!("steps/{c}")))
    .collect::<Result<_>>()?;
    if cols.iter().any(|c| c.len() != step.len()) || epoch.len() != step.len() {
        return Err(bad("the /steps datasets have different lengths".into()));
    }
    let steps = (0..step.len())
        .map(|i| StepRecord {
            step: step[i],
            epoch: epoch[i],
            train_loss: cols[0][i],
            train_acc: cols[1][i],
            val_loss: cols[2][i],
            val_acc: cols[3][i],
            lr: cols[4][i],
            grad_norm: cols[5][i],
            seconds: cols[6][i],
        })
        .collect();

    let a_step = col_u64("alphas/step")?;
    let a_epoch = col_u32("alphas/epoch")?;
    let per = meta.edges.len() * meta.ops.len();
    let normal = need("alphas/normal")?.read_raw::<f32>()?;
    let reduce = match file.dataset("alphas/reduce") {
        Ok(d) => Some(d.read_raw::<f32>()?),
        Err(_) => None,
    };
    if normal.len() != a_step.len() * per
        || reduce
            .as_ref()
            .is_some_and(|r| r.len() != a_step.len() * per)
    {
        return Err(bad("the /alphas datasets do not match /edges x /ops".into()));
    }
    let e = meta.edges.len();
    let betas = |t: &str| -> Result<Option<Vec<f32>>> {
        match file.dataset(&format!("alphas/betas_{t}")) {
            Ok(d) => {
                let b = d.read_raw::<f32>()?;
                if b.len() != a_step.len() * e {
                    return Err(bad(format!("/alphas/betas_{t} does not match /edges")));
                }
                Ok(Some(b))
            }
            Err(_) => Ok(None),
        }
    };
    let (normal_betas, reduce_betas) = (betas("normal")?, betas("reduce")?);
    let row = |b: &Option<Vec<f32>>, i: usize| b.as_ref().map(|b| b[i * e..(i + 1) * e].to_vec());
    let alphas = (0..a_step.len())
        .map(|i| AlphaRecord {
            step: a_step[i],
            epoch: a_epoch[i],
            normal: normal[i * per..(i + 1) * per].to_vec(),
            reduce: reduce.as_ref().map(|r| r[i * per..(i + 1) * per].to_vec()),
            normal_betas: row(&normal_betas, i),
            reduce_betas: row(&reduce_betas, i),
        })
        .collect();

    let e_epoch = col_u32("epochs/epoch")?;
    let ecols: Vec<Vec<f64>> = [
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "seconds",
    ]
    .iter()
    .map(|c| col_f64(&format!("epochs/{c}")))
    .collect::<Result<_>>()?;
    let genotypes = read_strings(&need("epochs/genotype")?)?;
    // Only in runs that computed a Hessian eigenvalue.
    let hessian = match file.dataset("epochs/hessian_eigenvalue") {
        Ok(d) => Some(d.read_raw::<f64>()?),
        Err(_) => None,
    };
    if ecols.iter().any(|c| c.len() != e_epoch.len())
        || genotypes.len() != e_epoch.len()
        || hessian.as_ref().is_some_and(|h| h.len() != e_epoch.len())
    {
        return Err(bad("the /epochs datasets have different lengths".into()));
    }
    let epochs = (0..e_epoch.len())
        .map(|i| EpochRecord {
            epoch: e_epoch[i],
            train_loss: ecols[0][i],
            train_acc: ecols[1][i],
            val_loss: ecols[2][i],
            val_acc: ecols[3][i],
            lr: ecols[4][i],
            seconds: ecols[5][i],
            genotype: genotypes[i].clone(),
            hessian_eigenvalue: hessian.as_ref().map(|h| h[i]).filter(|v| !v.is_nan()),
        })
        .collect();
    let (genotype, stop_reason) = match file.group("genotype") {
        Ok(g) => (
            Some((read_str_attr(&g, "text")?, read_str_attr(&g, "json")?)),
            // Absent in runs that ran their schedule, and in files from before it.
            read_str_attr(&g, "stop_reason").ok(),
        ),
        Err(_) => (None, None),
    };
    let mut tables = Vec::new();
    for root in TABLE_ROOTS {
        if let Ok(g) = file.group(root) {
            for name in g.member_names()? {
                if let Ok(sub) = g.group(&name) {
                    tables.push(
                        read_table(&sub, &format!("{root}/{name}"))
                            .map_err(|e| bad(format!("table '/{root}/{name}': {e}")))?,
                    );
                }
            }
        }
    }
    Ok(RunLog {
        meta,
        steps,
        alphas,
        epochs,
        genotype,
        stop_reason,
        tables,
    })
}

fn write_table(file: &hdf5::File, t: &Table) -> Result<()> {
    let rows = t.columns.first().map_or(0, |(_, c)| c.len());
    if let Some((name, _)) = t.columns.iter().find(|(_, c)| c.len() != rows) {
        return Err(Error::Other(format!(
            "table '{}': column '{name}' has a different length",
            t.group
        )));
    }
    let mut g: hdf5::Group = file.group("/")?;
    for part in t.group.split('/') {
        g = match g.group(part) {
            Ok(sub) => sub,
            Err(_) => g.create_group(part)?,
        };
    }
    for (k, v) in &t.attrs {
        str_attr(&g, k, v)?;
    }
    let names: Vec<String> = t.columns.iter().map(|(n, _)| n.clone()).collect();
    str_attr(&g, "columns", &names.join(","))?;
    for (name, c) in &t.columns {
        match c {
            Column::Text(v) => strings(&g, name, v)?,
            Column::F64(v) => column(&g, name, v.iter().copied())?,
            Column::U64(v) => column(&g, name, v.iter().copied())?,
        }
    }
    Ok(())
}

fn read_table(g: &hdf5::Group, group: &str) -> Result<Table> {
    use hdf5::types::TypeDescriptor as T;
    let names: Vec<String> = match read_str_attr(g, "columns") {
        Ok(list) if !list.is_empty() => list.split(',').map(str::to_string).collect(),
        _ => g.member_names()?,
    };
    let mut columns = Vec::new();
    for name in names {
        let d = g.dataset(&name)?;
        let c = match d.dtype()?.to_descriptor()? {
            T::VarLenUnicode => Column::Text(read_strings(&d)?),
            T::Float(_) => Column::F64(d.read_raw::<f64>()?),
            _ => Column::U64(d.read_raw::<u64>()?),
        };
        columns.push((name, c));
    }
    let mut attrs = Vec::new();
    for a in g.attr_names()? {
        if a != "columns" {
            attrs.push((a.clone(), read_str_attr(g, &a)?));
        }
    }
    Ok(Table {
        group: group.to_string(),
        attrs,
        columns,
    })
}

/// `s` as an HDF5 variable-length string.
pub fn unicode(s: &str) -> Result<VarLenUnicode> {
    s.parse::<VarLenUnicode>()
        .map_err(|e| Error::Other(format!("string not storable in HDF5: {e}")))
}

/// Write the string attribute `name`.
pub fn str_attr(loc: &hdf5::Location, name: &str, value: &str) -> Result<()> {
    loc.new_attr::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&unicode(value)?)?;
    Ok(())
}

/// Read the string attribute `name`.
pub fn read_str_attr(loc: &hdf5::Location, name: &str) -> Result<String> {
    Ok(loc
        .attr(name)?
        .read_scalar::<VarLenUnicode>()?
        .as_str()
        .to_string())
}

fn strings(g: &hdf5::Group, name: &str, values: &[String]) -> Result<()> {
    let data: Vec<VarLenUnicode> = values.iter().map(|s| unicode(s)).collect::<Result<_>>()?;
    g.new_dataset_builder().with_data(&data).create(name)?;
    Ok(())
}

fn read_strings(d: &hdf5::Dataset) -> Result<Vec<String>> {
    Ok(d.read_raw::<VarLenUnicode>()?
        .iter()
        .map(|s| s.as_str().to_string())
        .collect())
}

fn column<T: hdf5::H5Type + Copy>(
    g: &hdf5::Group,
    name: &str,
    values: impl Iterator<Item = T>,
) -> Result<()> {
    let data: Vec<T> = values.collect();
    g.new_dataset_builder().with_data(&data).create(name)?;
    Ok(())
}

fn cube<'a>(
    g: &hdf5::Group,
    name: &str,
    rows: impl Iterator<Item = &'a [f32]>,
    n: usize,
    e: usize,
    k: usize,
) -> Result<()> {
    let flat: Vec<f32> = rows.flat_map(|r| r.iter().copied()).collect();
    let arr = ndarray::Array3::from_shape_vec((n, e, k), flat)
        .map_err(|e| Error::Other(format!("alpha records of inconsistent size: {e}")))?;
    g.new_dataset_builder().with_data(&arr).create(name)?;
    Ok(())
}
