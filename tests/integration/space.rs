//! Search spaces and genotypes as plain data: shipped files, published genotypes, errors.
use supernet::derive::derive_cell;
use supernet::space::{DeriveRule, Genotype, OpKind, SearchSpace};

pub fn space(name: &str) -> SearchSpace {
    SearchSpace::from_file(format!("supernets/{name}.toml").as_ref()).unwrap()
}

const DARTS_V1: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])";
pub const DARTS_V2: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])";
// Written over several lines with double quotes and range(), as in PC-DARTS's genotypes.py.
const PC_DARTS: &str = r#"Genotype(
    normal=[("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
            ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
    normal_concat=range(2, 6),
    reduce=[("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
    reduce_concat=range(2, 6),
)"#;

#[test]
fn shipped_spaces_have_the_reference_shapes() {
    let d = space("darts_cnn");
    assert_eq!((d.cell.num_edges(), d.ops.len(), d.cell.nodes), (14, 8, 4));
    assert_eq!(d.network.reduction_layers(), vec![2, 5]);
    let n = space("nb201");
    assert_eq!((n.cell.num_edges(), n.ops.len()), (6, 5));
    assert_eq!(n.cell.derive, DeriveRule::Argmax);
    for name in ["fmnist_small", "tiny"] {
        space(name);
    }
    // The TOML form round-trips.
    assert_eq!(SearchSpace::from_toml(&d.to_toml()).unwrap(), d);
}

#[test]
fn published_darts_genotypes_parse_validate_and_round_trip() {
    let d = space("darts_cnn");
    for text in [DARTS_V1, DARTS_V2, PC_DARTS] {
        let g = Genotype::parse(text).unwrap();
        g.validate(&d).unwrap();
        assert_eq!(g.normal.nodes.len(), 4);
        assert_eq!(g.normal.concat, vec![2, 3, 4, 5]);
        assert_eq!(Genotype::parse(&g.to_darts()).unwrap(), g);
        assert_eq!(Genotype::parse(&g.to_json()).unwrap(), g);
    }
    let v2 = Genotype::parse(DARTS_V2).unwrap();
    assert_eq!(v2.normal.nodes[3][1].op, OpKind::DilConv3x3);
    assert_eq!(v2.normal.nodes[3][1].from, 2);
    assert!(v2.to_darts().contains("normal_concat=range(2, 6)"));
}

#[test]
fn nb201_string_round_trips() {
    let n = space("nb201");
    let text =
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|";
    let g = Genotype::parse(text).unwrap();
    g.validate(&n).unwrap();
    assert_eq!(g.to_text(), text);
    assert_eq!(Genotype::parse(&g.to_json()).unwrap(), g);
    // A DARTS genotype does not fit the NAS-Bench-201 space, and the reverse.
    assert!(Genotype::parse(DARTS_V2).unwrap().validate(&n).is_err());
    assert!(g.validate(&space("darts_cnn")).is_err());
}

fn err(text: &str) -> String {
    SearchSpace::from_toml(text).unwrap_err().to_string()
}

fn darts_space_with(replace: &str, by: &str) -> String {
    let text = std::fs::read_to_string("supernets/darts_cnn.toml").unwrap();
    assert!(
        text.contains(replace),
        "fixture text '{replace}' not in darts_cnn.toml"
    );
    text.replace(replace, by)
}

#[test]
fn bad_space_files_name_field_value_and_what_is_allowed() {
    let e = err(&darts_space_with("\"sep_conv_3x3\"", "\"sep_conv_4x4\""));
    assert!(
        e.contains("sep_conv_4x4") && e.contains("skip_connect"),
        "{e}"
    );
    let e = err(&darts_space_with(
        "reduction_layers = [2, 5]",
        "reduction_layers = [2, 9]",
    ));
    assert!(
        e.contains("reduction_layers") && e.contains('9') && e.contains("layers = 8"),
        "{e}"
    );
    let e = err(&darts_space_with("channels = 16", "channels = 0"));
    assert!(
        e.contains("network.channels") && e.contains("positive"),
        "{e}"
    );
    let e = err(&darts_space_with(
        "concat = [2, 3, 4, 5]",
        "concat = [2, 3, 7]",
    ));
    assert!(e.contains("cell.concat") && e.contains('7'), "{e}");
    let e = err(&darts_space_with("kind = \"darts\"", "kind = \"resnet\""));
    assert!(e.contains("resnet"), "{e}");
    // The file name is part of the error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, darts_space_with("channels = 16", "channels = 0")).unwrap();
    let e = SearchSpace::from_file(&path).unwrap_err().to_string();
    assert!(e.contains("broken.toml"), "{e}");
    let e = SearchSpace::from_file("supernets/no_such_space.toml".as_ref())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no_such_space.toml"), "{e}");
}

#[test]
fn genotypes_that_do_not_fit_are_rejected_with_the_reason() {
    let d = space("darts_cnn");
    let out_of_range = DARTS_V2.replacen("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)", 1);
    let e = Genotype::parse(&out_of_range)
        .unwrap()
        .validate(&d)
        .unwrap_err()
        .to_string();
    assert!(e.contains("node 5") && e.contains("below 5"), "{e}");
    let tiny = space("tiny");
    let e = Genotype::parse(DARTS_V2)
        .unwrap()
        .validate(&tiny)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nodes"), "{e}");
    let e = Genotype::parse("Genotype(normal=[('conv_9x9', 0)")
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv_9x9"), "{e}");
    let e = Genotype::parse("|nor_conv_3x3~x|").unwrap_err().to_string();
    assert!(e.contains("state index"), "{e}");
}

#[test]
fn derivation_top_k_skips_none_and_argmax_keeps_it() {
    let d = space("darts_cnn");
    // Node 2 (inputs 0, 1): edge 0 is dominated by none; edge 1 prefers sep_conv_5x5.
    let mut w = vec![vec![0.1f32; 8]; 14];
    w[0] = vec![0.9, 0.01, 0.01, 0.02, 0.01, 0.01, 0.03, 0.01];
    w[1] = vec![0.0, 0.1, 0.1, 0.1, 0.1, 0.5, 0.05, 0.05];
    let cell = derive_cell(&w, &d.cell, &d.ops);
    assert_eq!(cell.nodes[0][0].op, OpKind::SepConv5x5);
    assert_eq!(cell.nodes[0][0].from, 1);
    assert_eq!(
        cell.nodes[0][1].op,
        OpKind::DilConv3x3,
        "edge 0 keeps its best op other than none"
    );
    let n = space("nb201");
    let mut w = vec![vec![0.1f32; 5]; 6];
    w[0][0] = 0.9;
    let cell = derive_cell(&w, &n.cell, &n.ops);
    assert_eq!(cell.nodes[0][0].op, OpKind::None);
    assert_eq!(cell.nodes[2].len(), 3);
}
