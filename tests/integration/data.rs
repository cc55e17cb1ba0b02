//! Data loading: every format on small files written here, the error cases, splits, and the
//! determinism the resumable search depends on; plus the real default Fashion-MNIST.
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use supernet::data::{
    Augment, Batch, DataError, DataFormat, DataSource, Dataset, Hdf5Options, Layout, Loader,
    LoaderConfig, Normalization, Pixels, SearchLoaders, SearchSplit, Subset, DEFAULT_DATA_DIR,
};
use tch::{Kind, Tensor};

// ---------- file writers ----------

fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn write(path: &Path, bytes: &[u8], gz: bool) {
    let mut f = std::fs::File::create(path).unwrap();
    if gz {
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap();
    } else {
        f.write_all(bytes).unwrap();
    }
}

/// Image i has every pixel equal to 10 * label + i % 10 (so images are recognisable).
fn pixel(i: usize, label: u8) -> u8 {
    10 * label + (i % 10) as u8
}

/// An IDX directory with `n_train`/`n_test` 4x5 images, label = i % 10.
fn write_idx_dir(dir: &Path, n_train: usize, n_test: usize, gz: bool) {
    let ext = if gz { ".gz" } else { "" };
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let images: Vec<u8> = (0..n)
            .flat_map(|i| std::iter::repeat_n(pixel(i, labels[i]), 20))
            .collect();
        write(
            &dir.join(format!("{prefix}-images-idx3-ubyte{ext}")),
            &idx_bytes(0x803, &[n as u32, 4, 5], &images),
            gz,
        );
        write(
            &dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")),
            &idx_bytes(0x801, &[n as u32], &labels),
            gz,
        );
    }
}

/// CIFAR records: `label_bytes` label bytes (the last one is the class) + 3072 pixels where
/// channel c of record i is the constant i + c.
fn cifar_records(n: usize, labels: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend(labels(i));
        for c in 0..3 {
            out.extend(std::iter::repeat_n((i + c) as u8, 1024));
        }
    }
    out
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn err_text<T>(r: Result<T, DataError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            eprintln!("expected error: {e}");
            e.to_string()
        }
    }
}

fn f32s(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

fn i64s(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t).unwrap()
}

fn same_batch(a: &Batch, b: &Batch) -> bool {
    a.indices == b.indices
        && a.images.size() == b.images.size()
        && f32s(&a.images) == f32s(&b.images)
        && i64s(&a.labels) == i64s(&b.labels)
}

fn synthetic(n: usize) -> Arc<Dataset> {
    Arc::new(Dataset::synthetic(n, 10, 1, 8, 8, 7).unwrap())
}

// ---------- formats ----------

#[test]
fn idx_raw_and_gz_load_identically() {
    let (raw, gz) = (tmp(), tmp());
    write_idx_dir(raw.path(), 30, 20, false);
    write_idx_dir(gz.path(), 30, 20, true);
    let a = DataSource::new(raw.path()).load().unwrap();
    let b = DataSource::new(gz.path()).load().unwrap();
    // A temp dir named neither fashion nor mnist is a generic IDX set.
    assert_eq!(a.format, DataFormat::Idx);
    for ds in [&a, &b] {
        assert_eq!(ds.train.len(), 30);
        assert_eq!(ds.test.len(), 20);
        assert_eq!(
            (ds.train.channels(), ds.train.height(), ds.train.width()),
            (1, 4, 5)
        );
        assert_eq!(ds.train.num_classes(), 10);
        assert_eq!(ds.train.labels()[13], 3);
        let Pixels::U8(px) = ds.train.pixels() else {
            panic!("IDX pixels are u8")
        };
        assert_eq!(px[13 * 20], pixel(13, 3));
    }
    let (Pixels::U8(pa), Pixels::U8(pb)) = (a.train.pixels(), b.train.pixels()) else {
        panic!()
    };
    assert_eq!(pa, pb);
    assert_eq!(a.train.normalization(), b.train.normalization());
    // Explicit formats fix classes and normalisation.
    let f = DataSource::new(raw.path())
        .with_format(DataFormat::FashionMnist)
        .load()
        .unwrap();
    assert_eq!(f.train.normalization(), &Normalization::fashion_mnist());
    let m = DataSource::new(raw.path())
        .with_format("mnist".parse().unwrap())
        .load()
        .unwrap();
    assert_eq!(m.train.normalization(), &Normalization::mnist());
}

#[test]
fn idx_format_from_directory_name() {
    let root = tmp();
    let dir = root.path().join("my-fashion-mnist");
    std::fs::create_dir(&dir).unwrap();
    write_idx_dir(&dir, 10, 10, true);
    assert_eq!(
        DataSource::new(&dir).load().unwrap().format,
        DataFormat::FashionMnist
    );
    let dir = root.path().join("MNIST");
    std::fs::create_dir(&dir).unwrap();
    write_idx_dir(&dir, 10, 10, false);
    assert_eq!(
        DataSource::new(&dir).load().unwrap().format,
        DataFormat::Mnist
    );
}

#[test]
fn cifar10_binary() {
    let root = tmp();
    let dir = root.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&dir).unwrap();
    for b in 1..=5 {
        let recs = cifar_records(4, |i| vec![((i + b) % 10) as u8]);
        write(&dir.join(format!("data_batch_{b}.bin")), &recs, false);
    }
    write(
        &dir.join("test_batch.bin"),
        &cifar_records(3, |i| vec![i as u8]),
        false,
    );
    // The parent directory (where the archive was unpacked) is accepted too.
    let ds = DataSource::new(root.path()).load().unwrap();
    assert_eq!(ds.format, DataFormat::Cifar10);
    assert_eq!(ds.train.len(), 20);
    assert_eq!(ds.test.len(), 3);
    assert_eq!(
        (ds.train.channels(), ds.train.height(), ds.train.width()),
        (3, 32, 32)
    );
    assert_eq!(ds.train.labels()[4], 2); // batch 2, record 0
    let Pixels::U8(px) = ds.test.pixels() else {
        panic!()
    };
    // Record 2, channel 1 (green) is constant 3; CHW order kept.
    assert_eq!(px[2 * 3072 + 1024 + 500], 3);
    assert_eq!(ds.train.normalization(), &Normalization::cifar10());
    assert!(ds.default_augment().flip);
    assert_eq!(ds.default_augment().crop_padding, 4);
}

#[test]
fn cifar100_binary_uses_fine_label() {
    let dir = tmp();
    let recs = cifar_records(6, |i| vec![(i % 20) as u8, (50 + i) as u8]);
    write(&dir.path().join("train.bin"), &recs, false);
    write(
        &dir.path().join("test.bin"),
        &cifar_records(2, |_| vec![19, 99]),
        false,
    );
    let ds = DataSource::new(dir.path()).load().unwrap();
    assert_eq!(ds.format, DataFormat::Cifar100);
    assert_eq!(ds.train.num_classes(), 100);
    assert_eq!(ds.train.labels(), &[50, 51, 52, 53, 54, 55]);
    assert_eq!(ds.test.labels(), &[99, 99]);
    assert_eq!(ds.train.normalization(), &Normalization::cifar100());
}

fn write_h5_u8_nhwc(path: &Path, n: usize, test_names: Option<(&str, &str)>) {
    let file = hdf5::File::create(path).unwrap();
    // Image i, pixel (y, x), channel c = i + 10 c + y.
    let imgs = ndarray::Array4::from_shape_fn((n, 6, 5, 3), |(i, y, _x, c)| (i + 10 * c + y) as u8);
    let labels = ndarray::Array1::from_shape_fn(n, |i| (i % 4) as u8);
    file.new_dataset_builder()
        .with_data(&imgs)
        .create("images")
        .unwrap();
    file.new_dataset_builder()
        .with_data(&labels)
        .create("labels")
        .unwrap();
    if let Some((ti, tl)) = test_names {
        let t = imgs.slice(ndarray::s![..2, .., .., ..]).to_owned();
        let tlab = ndarray::Array1::from_vec(vec![3i32, 0]);
        file.new_dataset_builder().with_data(&t).create(ti).unwrap();
        file.new_dataset_builder()
            .with_data(&tlab)
            .create(tl)
            .unwrap();
    }
}

#[test]
fn hdf5_u8_nhwc() {
    let dir = tmp();
    let path = dir.path().join("set.h5");
    write_h5_u8_nhwc(&path, 8, Some(("test_images", "test_labels")));
    let ds = DataSource::new(&path).load().unwrap();
    assert_eq!(ds.format, DataFormat::Hdf5);
    assert_eq!(ds.train.len(), 8);
    assert_eq!(ds.test.len(), 2);
    assert_eq!(
        (ds.train.channels(), ds.train.height(), ds.train.width()),
        (3, 6, 5)
    );
    assert_eq!(ds.train.num_classes(), 4);
    let Pixels::U8(px) = ds.train.pixels() else {
        panic!("uint8 stays u8")
    };
    // NCHW now: image 5, channel 2, y 4, x 1 = 5 + 20 + 4.
    assert_eq!(px[5 * 90 + 2 * 30 + 4 * 5 + 1], 29);
    // Normalisation computed from the training images.
    let mean = ds.train.normalization().mean[1];
    let expect = (0..8usize)
        .flat_map(|i| (0..6usize).map(move |y| (i + 10 + y) as f64 / 255.0))
        .sum::<f64>()
        / 48.0;
    assert!((mean as f64 - expect).abs() < 1e-5, "{mean} vs {expect}");
    assert_eq!(ds.test.labels(), &[3, 0]);
}

#[test]
fn hdf5_float_nchw_with_custom_names_and_test_file() {
    let dir = tmp();
    let (train, test) = (dir.path().join("train.hdf5"), dir.path().join("test.hdf5"));
    let imgs = ndarray::Array4::from_shape_fn((6, 2, 3, 3), |(i, c, y, x)| {
        (i as f32) + 0.5 * c as f32 + 0.1 * (y * 3 + x) as f32
    });
    let labels = ndarray::Array1::from_vec(vec![0i64, 1, 2, 0, 1, 2]);
    {
        let f = hdf5::File::create(&train).unwrap();
        f.new_dataset_builder()
            .with_data(&imgs)
            .create("x")
            .unwrap();
        f.new_dataset_builder()
            .with_data(&labels)
            .create("y")
            .unwrap();
        let f = hdf5::File::create(&test).unwrap();
        let t = imgs.mapv(f64::from); // f64 on disk is read as f32
        f.new_dataset_builder().with_data(&t).create("x").unwrap();
        f.new_dataset_builder()
            .with_data(&labels)
            .create("y")
            .unwrap();
    }
    let mut src = DataSource::new(&train);
    src.hdf5 = Hdf5Options {
        images: "x".into(),
        labels: "y".into(),
        test_file: Some(test),
        layout: Layout::Nchw,
        ..Hdf5Options::default()
    };
    let ds = src.load().unwrap();
    assert_eq!(
        (ds.train.channels(), ds.train.height(), ds.train.width()),
        (2, 3, 3)
    );
    assert_eq!(ds.test.len(), 6);
    let Pixels::F32(px) = ds.test.pixels() else {
        panic!("float stays f32")
    };
    assert!((px[4 * 18 + 9 + 5] - (4.0 + 0.5 + 0.5)).abs() < 1e-6);
    // The loader normalises with the computed statistics: mean 0, std 1 over the set.
    let norm = ds.train.normalization();
    assert_eq!(norm.mean.len(), 2);
    let b = Loader::eval(Subset::all(&ds.train), 6)
        .unwrap()
        .batch(0, 0)
        .unwrap();
    let per_channel = b.images.transpose(0, 1).reshape([2, -1]);
    let m = f32s(&per_channel.mean_dim(1i64, false, Kind::Float));
    let s = f32s(&per_channel.std_dim(1i64, false, false));
    for c in 0..2 {
        assert!(
            m[c].abs() < 1e-5 && (s[c] - 1.0).abs() < 1e-4,
            "{m:?} {s:?}"
        );
    }
}

// ---------- error cases ----------

#[test]
fn missing_default_data_names_the_debian_package() {
    let dir = tmp();
    let text = err_text(DataSource::new(dir.path().join("nowhere")).load());
    assert!(
        text.contains("nowhere") && text.contains("not found"),
        "{text}"
    );
    // Fashion-MNIST files that are missing point to the Debian package.
    let src = DataSource {
        path: dir.path().join("fashion-mnist"),
        ..DataSource::fashion_mnist()
    };
    let text = err_text(src.load());
    assert!(
        text.contains("install the Debian package dataset-fashion-mnist"),
        "{text}"
    );
    std::fs::create_dir(&src.path).unwrap();
    let text = err_text(src.load());
    assert!(text.contains("train-images-idx3-ubyte"), "{text}");
    assert!(text.contains("dataset-fashion-mnist"), "{text}");
}

#[test]
fn idx_missing_test_labels_names_the_file() {
    let dir = tmp();
    write_idx_dir(dir.path(), 10, 10, false);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let text = err_text(DataSource::new(dir.path()).load());
    assert!(
        text.contains("t10k-labels-idx1-ubyte") && text.contains("not found"),
        "{text}"
    );
}

#[test]
fn idx_wrong_magic() {
    let dir = tmp();
    write_idx_dir(dir.path(), 10, 10, false);
    let p = dir.path().join("train-labels-idx1-ubyte");
    write(&p, &idx_bytes(0x803, &[10], &[0; 10]), false);
    let text = err_text(DataSource::new(dir.path()).load());
    assert!(
        text.contains("train-labels-idx1-ubyte") && text.contains("magic"),
        "{text}"
    );
}

#[test]
fn idx_truncated_and_oversized() {
    let dir = tmp();
    write_idx_dir(dir.path(), 10, 10, true);
    let p = dir.path().join("train-images-idx3-ubyte.gz");
    write(&p, &idx_bytes(0x803, &[10, 4, 5], &[0; 150]), true);
    let text = err_text(DataSource::new(dir.path()).load());
    assert!(
        text.contains("train-images-idx3-ubyte.gz") && text.contains("truncated"),
        "{text}"
    );
    write(&p, &idx_bytes(0x803, &[10, 4, 5], &[0; 201]), true);
    let text = err_text(DataSource::new(dir.path()).load());
    assert!(text.contains("does not match the header"), "{text}");
    write(&p, &[0, 0, 8], true);
    let text = err_text(DataSource::new(dir.path()).load());
    assert!(text.contains("truncated"), "{text}");
}

#[test]
fn idx_count_mismatch_and_label_out_of_range() {
    let dir = tmp();
    write_idx_dir(dir.path(), 10, 10, false);
    let p = dir.path().join("t10k-labels-idx1-ubyte");
    write(&p, &idx_bytes(0x801, &[9], &[0; 9]), false);
    let text = err_text(DataSource::new(dir.path()).load());
    assert!(
        text.contains("10 images") && text.contains("9 labels"),
        "{text}"
    );
    let mut labels = vec![0u8; 10];
    labels[7] = 10;
    write(&p, &idx_bytes(0x801, &[10], &labels), false);
    let text = err_text(
        DataSource::new(dir.path())
            .with_format(DataFormat::FashionMnist)
            .load(),
    );
    assert!(
        text.contains("t10k-labels-idx1-ubyte") && text.contains("label 10 of sample 7"),
        "{text}"
    );
}

#[test]
fn cifar_errors() {
    let dir = tmp();
    write(
        &dir.path().join("train.bin"),
        &cifar_records(2, |_| vec![0, 1]),
        false,
    );
    let text = err_text(DataSource::new(dir.path()).load());
    assert!(
        text.contains("test.bin") && text.contains("CIFAR-100"),
        "{text}"
    );
    let mut recs = cifar_records(2, |_| vec![0, 1]);
    recs.pop();
    write(&dir.path().join("test.bin"), &recs, false);
    let text = err_text(DataSource::new(dir.path()).load());
    assert!(
        text.contains("test.bin") && text.contains("3074-byte"),
        "{text}"
    );
    write(
        &dir.path().join("test.bin"),
        &cifar_records(2, |_| vec![0, 100]),
        false,
    );
    let text = err_text(DataSource::new(dir.path()).load());
    assert!(text.contains("label 100 of sample 0"), "{text}");
}

#[test]
fn hdf5_errors() {
    let dir = tmp();
    let path = dir.path().join("set.h5");
    write_h5_u8_nhwc(&path, 4, None);
    let text = err_text(DataSource::new(&path).load());
    assert!(
        text.contains("test_images") && text.contains("set.h5"),
        "{text}"
    );
    let mut src = DataSource::new(&path);
    src.hdf5.images = "pictures".into();
    let text = err_text(src.load());
    assert!(
        text.contains("'pictures'") && text.contains("images, labels"),
        "{text}"
    );
    // A test label the training set never has is out of range.
    write_h5_u8_nhwc(&path, 3, Some(("test_images", "test_labels")));
    let text = err_text(DataSource::new(&path).load());
    assert!(
        text.contains("test_labels") && text.contains("label 3"),
        "{text}"
    );
    let junk = dir.path().join("junk.bin");
    write(&junk, b"not data", false);
    let text = err_text(DataSource::new(&junk).load());
    assert!(text.contains("cannot tell the data format"), "{text}");
}

#[test]
fn subset_larger_than_data_set() {
    let ds = synthetic(50);
    let text = err_text(SearchSplit::new(&ds, Some(51), 0));
    assert!(text.contains("51") && text.contains("only 50"), "{text}");
    let text = err_text(Subset::balanced(&ds, 500, 0));
    assert!(text.contains("500"), "{text}");
    assert!(Loader::new(Subset::all(&ds), LoaderConfig::train(0, Augment::none(), 0)).is_err());
    assert!(Loader::new(
        Subset::all(&ds),
        LoaderConfig::train(64, Augment::none(), 0)
    )
    .is_err());
}

#[test]
fn format_names_parse() {
    for f in DataFormat::ALL {
        assert_eq!(f.name().parse::<DataFormat>().unwrap(), f);
    }
    assert_eq!(
        "CIFAR-10".parse::<DataFormat>().unwrap(),
        DataFormat::Cifar10
    );
    assert!(err_text("png".parse::<DataFormat>()).contains("cifar100"));
}

// ---------- splits ----------

#[test]
fn search_split_is_balanced_disjoint_and_seeded() {
    let ds = synthetic(1000);
    let full = SearchSplit::new(&ds, None, 3).unwrap();
    assert_eq!(full.weights.len(), 500);
    assert_eq!(full.arch.len(), 500);
    let mut all: Vec<u32> = [full.weights.indices(), full.arch.indices()].concat();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 1000);
    assert_eq!(full.weights.class_counts(), vec![50; 10]);

    let small = SearchSplit::new(&ds, Some(101), 3).unwrap();
    assert_eq!(small.weights.len() + small.arch.len(), 101);
    assert!(small.weights.len().abs_diff(small.arch.len()) <= 1);
    assert!(small
        .weights
        .indices()
        .iter()
        .all(|i| !small.arch.indices().contains(i)));
    for (w, a) in small
        .weights
        .class_counts()
        .iter()
        .zip(small.arch.class_counts())
    {
        assert!(w + a >= 10 && w + a <= 11 && w.abs_diff(a) <= 1);
    }
    let again = SearchSplit::new(&ds, Some(101), 3).unwrap();
    assert_eq!(again.weights.indices(), small.weights.indices());
    let other = SearchSplit::new(&ds, Some(101), 4).unwrap();
    assert_ne!(other.weights.indices(), small.weights.indices());

    let sub = Subset::balanced(&ds, 30, 1).unwrap();
    assert_eq!(sub.class_counts(), vec![3; 10]);
}

// ---------- loaders ----------

fn train_loader(ds: &Arc<Dataset>, prefetch: usize, augment: Augment, seed: u64) -> Loader {
    let cfg = LoaderConfig {
        prefetch,
        ..LoaderConfig::train(16, augment, seed)
    };
    Loader::new(Subset::all(ds), cfg).unwrap()
}

const AUG: Augment = Augment {
    crop_padding: 2,
    flip: true,
    cutout: 4,
};

#[test]
fn batches_are_a_function_of_seed_epoch_and_position() {
    let ds = synthetic(200);
    let a = train_loader(&ds, 0, AUG, 11);
    let b = train_loader(&ds, 3, AUG, 11);
    assert_eq!(a.batches_per_epoch(), 12); // 200 / 16, last incomplete dropped
    for epoch in [0, 5] {
        let seq: Vec<Batch> = a.epoch(epoch, 0).collect();
        let pre: Vec<Batch> = b.epoch(epoch, 0).collect();
        assert_eq!(seq.len(), 12);
        assert!(seq.iter().zip(&pre).all(|(x, y)| same_batch(x, y)));
        // Resuming at batch 7 gives the same batches as skipping 7.
        let resumed: Vec<Batch> = b.epoch(epoch, 7).collect();
        assert_eq!(resumed.len(), 5);
        assert!(resumed.iter().zip(&seq[7..]).all(|(x, y)| same_batch(x, y)));
        assert!(same_batch(&a.batch(epoch, 9).unwrap(), &seq[9]));
    }
    // Epochs differ; a different seed differs.
    let e0 = a.batch(0, 0).unwrap();
    assert!(!same_batch(&e0, &a.batch(1, 0).unwrap()));
    assert!(!same_batch(
        &e0,
        &train_loader(&ds, 0, AUG, 12).batch(0, 0).unwrap()
    ));
    // The endless stream is the epochs one after the other, from any start.
    let stream: Vec<Batch> = b.stream(10).take(5).collect();
    assert_eq!((stream[0].epoch, stream[0].index), (0, 10));
    assert_eq!((stream[2].epoch, stream[2].index), (1, 0));
    assert!(same_batch(&stream[3], &a.batch(1, 1).unwrap()));
    assert!(a.batch(0, 12).is_err());
    assert_eq!(a.epoch(0, 99).count(), 0);
}

#[test]
fn dropping_a_prefetching_iterator_early_is_clean() {
    let ds = synthetic(200);
    let l = train_loader(&ds, 2, AUG, 1);
    for _ in 0..20 {
        let mut it = l.stream(0);
        it.next();
        drop(it);
    }
    assert_eq!(l.epoch(0, 0).count(), 12);
}

#[test]
fn shuffle_is_a_permutation_and_tensors_are_well_formed() {
    let ds = synthetic(100);
    let l = Loader::new(
        Subset::all(&ds),
        LoaderConfig {
            drop_last: false,
            ..LoaderConfig::train(32, AUG, 5)
        },
    )
    .unwrap();
    let batches: Vec<Batch> = l.epoch(2, 0).collect();
    assert_eq!(
        batches.iter().map(Batch::len).collect::<Vec<_>>(),
        [32, 32, 32, 4]
    );
    let mut seen: Vec<u32> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_ne!(seen, (0..100).collect::<Vec<_>>());
    seen.sort_unstable();
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    let b = &batches[0];
    assert_eq!(b.images.size(), [32, 1, 8, 8]);
    assert_eq!(b.images.kind(), Kind::Float);
    assert_eq!(b.labels.kind(), Kind::Int64);
    let labels = i64s(&b.labels);
    assert!(b
        .indices
        .iter()
        .zip(&labels)
        .all(|(&i, &l)| ds.labels()[i as usize] as i64 == l));
}

#[test]
fn eval_loader_visits_every_sample_once_in_order() {
    let ds = synthetic(70);
    let sub = Subset::balanced(&ds, 50, 2).unwrap();
    let l = Loader::eval(sub.clone(), 16).unwrap();
    assert_eq!(l.batches_per_epoch(), 4);
    let order: Vec<u32> = l.epoch(0, 0).flat_map(|b| b.indices).collect();
    assert_eq!(order, sub.indices());
    // No augmentation: exactly (x / 255 - mean) / std.
    let b = l.batch(0, 0).unwrap();
    let Pixels::U8(px) = ds.pixels() else {
        panic!()
    };
    let n = ds.normalization();
    let first = f32s(&b.images)[..64].to_vec();
    let i = sub.indices()[0] as usize;
    let want: Vec<f32> = px[i * 64..(i + 1) * 64]
        .iter()
        .map(|&v| (v as f32 / 255.0 - n.mean[0]) / n.std[0])
        .collect();
    assert_eq!(first, want);
}

/// A 1-channel 8x8 image whose pixel (y, x) = 8y + x + 1 (no zeros), a loader over it, and
/// the pixels as the loader normalises them (mean 0, std 1: v / 255).
fn ramp_loader(augment: Augment, seed: u64) -> (Loader, Vec<f32>) {
    let pixels: Vec<u8> = (0..8 * 8).map(|p| p as u8 + 1).collect();
    let norm = Normalization::new(vec![0.0], vec![1.0]);
    let ds = Dataset::new(
        "ramp",
        supernet::data::ImageShape::new(1, 8, 8),
        Pixels::U8(pixels.clone()),
        vec![0],
        1,
        norm,
    )
    .unwrap();
    let ds = Arc::new(ds);
    let cfg = LoaderConfig {
        prefetch: 0,
        ..LoaderConfig::train(1, augment, seed)
    };
    let l = Loader::new(Subset::all(&ds), cfg).unwrap();
    (l, pixels.iter().map(|&p| p as f32 / 255.0).collect())
}

#[test]
fn crop_flip_and_cutout_transform_the_image() {
    // Crop (+ flip): every output is the (mirrored) image shifted by (dy, dx) in -2..=2, with
    // zeros shifted in, as torchvision's RandomCrop(padding=2) then RandomHorizontalFlip.
    for flip in [false, true] {
        let (l, src) = ramp_loader(
            Augment {
                crop_padding: 2,
                flip,
                cutout: 0,
            },
            0,
        );
        let mut seen = std::collections::HashSet::new();
        for epoch in 0..100 {
            let out = f32s(&l.batch(epoch, 0).unwrap().images);
            let found = (-2..=2i32)
                .flat_map(|dy| (-2..=2i32).flat_map(move |dx| [(dy, dx, false), (dy, dx, true)]))
                .find(|&(dy, dx, mirror)| {
                    (0..64).all(|p| {
                        let x = if mirror {
                            7 - p as i32 % 8
                        } else {
                            p as i32 % 8
                        };
                        let (y, x) = (p as i32 / 8 + dy, x + dx);
                        let want = if (0..8).contains(&y) && (0..8).contains(&x) {
                            src[(y * 8 + x) as usize]
                        } else {
                            0.0
                        };
                        out[p] == want
                    })
                });
            seen.insert(found.expect("output is a shifted (mirrored) copy"));
        }
        assert!(seen.len() > 20, "crop offsets vary: {seen:?}");
        assert_eq!(seen.iter().any(|s| s.2), flip);
    }

    // Flip: identity or mirrored, both seen.
    let (l, src) = ramp_loader(
        Augment {
            flip: true,
            ..Augment::none()
        },
        0,
    );
    let mirrored: Vec<f32> = (0..64).map(|p| src[p / 8 * 8 + 7 - p % 8]).collect();
    let outs: Vec<Vec<f32>> = (0..20)
        .map(|e| f32s(&l.batch(e, 0).unwrap().images))
        .collect();
    assert!(outs.iter().all(|o| *o == src || *o == mirrored));
    assert!(outs.contains(&src) && outs.contains(&mirrored));

    // Cutout: a square of side <= 4 zeroed, at most 16 pixels, full 16 somewhere.
    let (l, _) = ramp_loader(
        Augment {
            cutout: 4,
            ..Augment::none()
        },
        0,
    );
    let zeros: Vec<usize> = (0..40)
        .map(|e| {
            f32s(&l.batch(e, 0).unwrap().images)
                .iter()
                .filter(|&&v| v == 0.0)
                .count()
        })
        .collect();
    assert!(
        zeros.iter().all(|&z| (1..=16).contains(&z)) && zeros.contains(&16),
        "{zeros:?}"
    );
}

#[test]
fn search_loaders_step_in_lockstep_and_resume() {
    let ds = synthetic(300);
    let split = SearchSplit::new(&ds, Some(250), 9).unwrap();
    let cfg = LoaderConfig::train(16, AUG, 9);
    let s = SearchLoaders::new(&split, cfg).unwrap();
    assert_eq!(s.steps_per_epoch(), 7); // 125 / 16
    let full: Vec<(Batch, Batch)> = s.epoch(1, 0).collect();
    assert_eq!(full.len(), 7);
    for (w, a) in &full {
        assert!(w
            .indices
            .iter()
            .all(|i| split.weights.indices().contains(i)));
        assert!(a.indices.iter().all(|i| split.arch.indices().contains(i)));
    }
    // Arch batches continue the arch stream: step k of epoch 1 is its overall batch 7 + k.
    assert!(same_batch(&full[2].1, &s.arch.stream(9).next().unwrap()));
    let resumed: Vec<(Batch, Batch)> = s.epoch(1, 4).collect();
    assert_eq!(resumed.len(), 3);
    for ((w, a), (fw, fa)) in resumed.iter().zip(&full[4..]) {
        assert!(same_batch(w, fw) && same_batch(a, fa));
    }
    // The halves do not share shuffles.
    assert_ne!(s.weights.config().seed, s.arch.config().seed);
}

// ---------- the real default data set ----------

#[test]
fn real_fashion_mnist() {
    if !Path::new(DEFAULT_DATA_DIR).exists() {
        println!("SKIPPED real_fashion_mnist: {DEFAULT_DATA_DIR} is absent (install dataset-fashion-mnist)");
        return;
    }
    let ds = DataSource::default().load().unwrap();
    assert_eq!(ds.format, DataFormat::FashionMnist);
    assert_eq!(ds.train.len(), 60000);
    assert_eq!(ds.test.len(), 10000);
    assert_eq!(
        (ds.train.channels(), ds.train.height(), ds.train.width()),
        (1, 28, 28)
    );
    assert_eq!(
        (ds.test.channels(), ds.test.height(), ds.test.width()),
        (1, 28, 28)
    );
    assert_eq!(ds.train.class_counts(), vec![6000; 10]);
    assert_eq!(ds.test.class_counts(), vec![1000; 10]);
    // The published statistics match the data.
    let computed = Normalization::compute(ds.train.pixels(), ds.train.shape());
    assert!((computed.mean[0] - 0.2860).abs() < 1e-3, "{computed:?}");
    assert!((computed.std[0] - 0.3530).abs() < 1e-3, "{computed:?}");
    let split = SearchSplit::new(&ds.train, None, 0).unwrap();
    assert_eq!((split.weights.len(), split.arch.len()), (30000, 30000));
    assert_eq!(split.weights.class_counts(), vec![3000; 10]);
    let b = Loader::new(
        split.weights,
        LoaderConfig::train(64, ds.default_augment(), 0),
    )
    .unwrap()
    .epoch(0, 0)
    .next()
    .unwrap();
    assert_eq!(b.images.size(), [64, 1, 28, 28]);
}

/// Prints loader throughput on Fashion-MNIST (batch 64); run with
/// `cargo test --release --test integration data::loader_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "timing report, not a check"]
fn loader_throughput() {
    if !Path::new(DEFAULT_DATA_DIR).exists() {
        println!("SKIPPED loader_throughput: {DEFAULT_DATA_DIR} is absent");
        return;
    }
    let data = DataSource::default().load().unwrap();
    let split = SearchSplit::new(&data.train, None, 0).unwrap();
    for (name, augment, prefetch) in [
        ("augment, inline", data.default_augment(), 0),
        ("augment, prefetch 3", data.default_augment(), 3),
        ("no augment, prefetch 3", Augment::none(), 3),
    ] {
        let cfg = LoaderConfig {
            prefetch,
            ..LoaderConfig::train(64, augment, 0)
        };
        let loader = Loader::new(split.weights.clone(), cfg).unwrap();
        supernet::data::measure_throughput(&loader, 50); // warm-up
        let t = supernet::data::measure_throughput(&loader, 1000);
        println!(
            "fashion-mnist batch 64, {name}: {:.0} images/s ({} batches in {:.2} s)",
            t.images_per_s, t.batches, t.seconds
        );
    }
}
