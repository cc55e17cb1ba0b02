//! `supernet sample --with-derived` and `supernet report` on a tiny search: the derived
//! architecture's row, the report's links, genotype and rank, and its errors.
use super::search::{fails_with, ok, supernet, tiny_search};
use std::path::Path;

/// A finished 2-epoch tiny search in `dir`.
fn finished_search(dir: &Path) {
    ok(tiny_search(dir, 2, &["--no-memory-check"])
        .output()
        .unwrap());
}

/// `supernet sample` of 4 architectures on 2 evaluation batches, table `name`.
fn sample(dir: &Path, name: &str, extra: &[&str]) -> String {
    ok(supernet()
        .args([
            "sample",
            "--n",
            "4",
            "--batches",
            "2",
            "--threads",
            "1",
            "--quiet",
        ])
        .args(["--name", name])
        .args(extra)
        .arg("--run")
        .arg(dir)
        .output()
        .unwrap());
    std::fs::read_to_string(dir.join(format!("samples-{name}.csv"))).unwrap()
}

fn report(dir: &Path) -> String {
    let out = ok(supernet()
        .arg("report")
        .arg("--run")
        .arg(dir)
        .output()
        .unwrap());
    let path = String::from_utf8(out.stdout).unwrap();
    assert_eq!(Path::new(path.trim()), dir.join("report.md"));
    std::fs::read_to_string(dir.join("report.md")).unwrap()
}

/// The targets of the report's relative links `](...)`.
fn links(report: &str) -> Vec<String> {
    report
        .split("](")
        .skip(1)
        .map(|s| s.split(')').next().unwrap().to_string())
        .collect()
}

/// Split one CSV line of a sample table: the quoted architecture, then the plain fields.
fn fields(line: &str) -> Vec<String> {
    let (arch, rest) = line[1..].split_once("\",").expect("a quoted architecture");
    let mut f = vec![arch.to_string()];
    f.extend(rest.split(',').map(str::to_string));
    f
}

#[test]
fn sample_with_derived_and_the_report_show_where_the_derived_architecture_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    finished_search(&dir);
    let genotype = std::fs::read_to_string(dir.join("genotype.txt")).unwrap();
    let genotype = genotype.trim();

    let plain = sample(&dir, "plain", &[]);
    let with = sample(&dir, "with", &["--with-derived"]);
    // Without the flag the table is as it always was; with it, the same draws and scores
    // with a `derived` column, and the derived row once (added unless it was drawn).
    let (plain, with): (Vec<&str>, Vec<&str>) = (plain.lines().collect(), with.lines().collect());
    assert_eq!(plain[0], "architecture,accuracy,loss,parameters,macs");
    assert_eq!(
        with[0],
        "architecture,accuracy,loss,parameters,macs,derived"
    );
    assert_eq!(plain.len(), 5);
    let rows: Vec<Vec<String>> = with[1..].iter().map(|l| fields(l)).collect();
    let derived: Vec<usize> = (0..rows.len()).filter(|&i| rows[i][5] == "1").collect();
    assert_eq!(derived.len(), 1, "{with:?}");
    assert!(rows.iter().all(|r| r[5] == "0" || r[5] == "1"));
    let d = derived[0];
    assert_eq!(rows[d][0], genotype);
    assert_eq!(with.len(), if d < 4 { 5 } else { 6 });
    for (p, w) in plain[1..].iter().zip(&with[1..]) {
        assert_eq!(&w[..w.len() - 2], *p, "the drawn rows changed");
    }
    assert_eq!(
        rows.iter().filter(|r| r[0] == genotype).count(),
        1,
        "the derived genotype was scored twice"
    );

    // The report before the plots: it names them and the command that draws them.
    let first = report(&dir);
    assert!(first.contains("Not drawn yet"), "{first}");
    assert!(first.contains(&format!("supernet plot --run {}", dir.display())));
    assert!(links(&first).is_empty());

    ok(supernet()
        .arg("plot")
        .arg("--run")
        .arg(&dir)
        .output()
        .unwrap());
    let text = report(&dir);
    assert!(text.contains(genotype), "{text}");
    assert!(!text.contains("Not drawn yet"), "{text}");
    // Every chart `plot` wrote is linked, and every link resolves from the run directory.
    let mut targets = links(&text);
    for t in &targets {
        assert!(dir.join(t).is_file(), "broken link {t}");
    }
    targets.sort();
    let mut drawn: Vec<String> = std::fs::read_dir(dir.join("plots"))
        .unwrap()
        .map(|e| format!("plots/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    drawn.sort();
    assert_eq!(targets, drawn);
    assert!(!drawn.is_empty());

    // The rank the report states is the one the CSV's scores give: higher accuracy first,
    // ties by lower loss.
    let score = |r: &Vec<String>| (r[1].parse::<f64>().unwrap(), r[2].parse::<f64>().unwrap());
    let (acc, loss) = score(&rows[d]);
    let better = rows
        .iter()
        .filter(|r| {
            let (a, l) = score(r);
            a > acc || (a == acc && l < loss)
        })
        .count();
    let stated = format!("rank {} of {}", better + 1, rows.len());
    let section = text.split("### `/samples/with`").nth(1).unwrap();
    assert!(section.contains(&stated), "'{stated}' not in:\n{section}");
    let plain_section = text.split("### `/samples/plain`").nth(1).unwrap();
    let plain_section = plain_section.split("###").next().unwrap();
    assert!(plain_section.contains("without `--with-derived`"));
    // Per-epoch table, settings and separation are there, computed from the run.
    for needle in [
        "| 2 |",
        "first-order",
        "| normal |",
        "| reduce |",
        "uniform is 1/4",
    ] {
        assert!(text.contains(needle), "'{needle}' not in:\n{text}");
    }
    // The same run file gives the same page.
    assert_eq!(report(&dir), text);
}

#[test]
fn report_errors_name_the_directory_or_file_and_keep_the_previous_report() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing");
    fails_with(
        supernet()
            .arg("report")
            .arg("--run")
            .arg(&missing)
            .output()
            .unwrap(),
        &["no such run directory", &missing.display().to_string()],
    );
    let dir = tmp.path().join("run");
    finished_search(&dir);
    let before = report(&dir);
    // The run file names its directory as well.
    ok(supernet()
        .arg("report")
        .arg("--run")
        .arg(dir.join("run.h5"))
        .output()
        .unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.join("report.md")).unwrap(),
        before
    );
    let file = dir.join("run.h5");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        supernet()
            .arg("report")
            .arg("--run")
            .arg(&dir)
            .output()
            .unwrap(),
        &[&file.display().to_string(), "not a readable HDF5 file"],
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("report.md")).unwrap(),
        before
    );
    std::fs::remove_file(&file).unwrap();
    fails_with(
        supernet()
            .arg("report")
            .arg("--run")
            .arg(&dir)
            .output()
            .unwrap(),
        &[&file.display().to_string(), "no run file"],
    );
    // `sample --with-derived` needs the run's final genotype; refused before scoring.
    std::fs::write(&file, &bytes).unwrap();
    let mut log = supernet::record::read_run(&file).unwrap();
    log.genotype = None;
    supernet::record::write_run(&log, &file).unwrap();
    let out = supernet()
        .args([
            "sample",
            "--n",
            "2",
            "--with-derived",
            "--name",
            "u",
            "--run",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    fails_with(out, &["--with-derived", "no final genotype", "--resume"]);
    assert!(!dir.join("samples-u.csv").exists());
}
