//! Device-generic paths: every op path that differs by device is compared with the CPU
//! (values and gradients) on CUDA when this machine has it, and skipped with the reason
//! printed otherwise; the comparison itself, the device memory query and the bench line
//! are exercised on the CPU.
use crate::search::{fails_with, ok, supernet};
use supernet::devcheck::parity::{parity, Row};
use tch::Device;

fn cuda() -> Option<Device> {
    if tch::Cuda::is_available() {
        Some(Device::Cuda(0))
    } else {
        println!("skipped: no CUDA device (tch::Cuda::is_available() is false on this machine); scripts/gpu-check runs `supernet parity` on one");
        None
    }
}

fn assert_rows(rows: &[Row]) {
    for r in rows {
        println!("{r:?}");
        assert!(r.ok(), "{} over its bound: {r:?}", r.case);
    }
}

#[test]
fn cuda_matches_the_cpu_on_every_op_path() {
    let Some(device) = cuda() else { return };
    let rows = parity(device, |_| true).unwrap();
    assert_eq!(rows.len(), 8);
    assert_rows(&rows);
}

#[test]
fn the_parity_harness_finds_the_cpu_equal_to_itself() {
    // Two fresh states on the CPU from the same weights: bit-identical (the harness copies
    // weights, alphas and BN statistics across, and compares every part).
    let rows = parity(Device::Cpu, |c| {
        c == "darts softmax, NCHW" || c == "darts gdas sample"
    })
    .unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(
            [r.logits, r.loss, r.bn_stats, r.weight_grads, r.alpha_grads],
            [0.0; 5],
            "{r:?}"
        );
    }
}

#[test]
fn cuda_memory_is_read_from_the_device() {
    let Some(device) = cuda() else {
        // Without CUDA the queries say so instead of reading host memory.
        let err = supernet::backend::device_memory(Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a CUDA device"), "{err}");
        return;
    };
    let (free, total) = supernet::backend::device_memory(device).unwrap();
    assert!(free > 0 && free <= total, "{free} of {total}");
    supernet::backend::reset_peak(device).unwrap();
    let t = tch::Tensor::zeros([1 << 20], (tch::Kind::Float, device));
    let s = supernet::backend::allocator_stats(device).unwrap();
    assert!(
        s.peak_allocated >= 4 << 20 && s.peak_reserved >= s.peak_allocated,
        "{s:?}"
    );
    drop(t);
}

#[test]
fn cuda_bf16_and_deterministic_steps() {
    let Some(_) = cuda() else { return };
    // Two deterministic runs of the same steps end in the same state, bit for bit.
    let run = || {
        let out = ok(supernet()
            .args([
                "bench",
                "--device",
                "cuda",
                "--layers",
                "3",
                "--channels",
                "8",
            ])
            .args(["--batch", "16", "--steps", "2", "--deterministic"])
            .output()
            .unwrap());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["state_fingerprint"].as_str().unwrap().to_string()
    };
    assert_eq!(run(), run());
}

#[test]
fn bench_prints_one_json_line_and_parity_refuses_a_missing_device() {
    let out = ok(supernet()
        .args([
            "bench", "--device", "cpu", "--space", "tiny", "--input", "1x8x8",
        ])
        .args([
            "--batch",
            "4",
            "--steps",
            "2",
            "--precision",
            "bf16",
            "--predict",
        ])
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "first-order");
    assert_eq!(v["precision"], "bf16");
    assert_eq!(v["times_s"].as_array().unwrap().len(), 2);
    assert!(v["median_s"].as_f64().unwrap() > 0.0);
    assert!(v["predicted_peak_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["state_fingerprint"].as_str().unwrap().len(), 16);
    if !tch::Cuda::is_available() {
        fails_with(
            supernet()
                .args(["parity", "--device", "cuda"])
                .output()
                .unwrap(),
            &["device", "cuda", "no"],
        );
    }
}
