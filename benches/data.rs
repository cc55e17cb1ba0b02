//! Loader throughput on Fashion-MNIST, batch 64, with the default augmentation
//! (crop padding 2): batches made on the calling thread, and batches taken from a
//! prefetching stream. Criterion reports elements/s = images/s.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use supernet::data::{DataSource, Loader, LoaderConfig, SearchSplit, DEFAULT_DATA_DIR};

const BATCH: usize = 64;

fn bench_loader(c: &mut Criterion) {
    if !std::path::Path::new(DEFAULT_DATA_DIR).exists() {
        eprintln!(
            "SKIPPED data bench: {DEFAULT_DATA_DIR} is absent (install dataset-fashion-mnist)"
        );
        return;
    }
    let data = DataSource::default().load().expect("Fashion-MNIST loads");
    let split = SearchSplit::new(&data.train, None, 0).expect("split");
    let augment = data.default_augment();
    let mut group = c.benchmark_group("fashion_mnist_batch64");
    group.throughput(Throughput::Elements(BATCH as u64));

    let inline = Loader::new(
        split.weights.clone(),
        LoaderConfig {
            prefetch: 0,
            ..LoaderConfig::train(BATCH, augment, 0)
        },
    )
    .expect("loader");
    // prefetch 0: the stream computes each batch on this thread when asked.
    let mut inline = inline.stream(0);
    group.bench_function("augment_batch_inline", |b| {
        b.iter(|| inline.next().expect("endless"))
    });

    for (name, aug) in [
        ("stream_prefetch3", augment),
        ("stream_prefetch3_no_augment", Default::default()),
    ] {
        let loader =
            Loader::new(split.weights.clone(), LoaderConfig::train(BATCH, aug, 0)).expect("loader");
        let mut stream = loader.stream(0);
        group.bench_function(name, |b| b.iter(|| stream.next().expect("endless")));
    }
    group.finish();
}

criterion_group!(benches, bench_loader);
criterion_main!(benches);
