// libtorch settings that tch 0.24 does not expose, with C linkage for src/backend:
// autocast per device type and dtype, cuDNN and deterministic-algorithm switches, and
// the device caching allocator's statistics. Device-generic headers only (c10/core), so
// it builds without the CUDA toolkit; CUDA calls are made only when CUDA is present.
#include <ATen/autocast_mode.h>
#include <ATen/Context.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <exception>
#include <cstring>
#include <string>

namespace {
thread_local std::string last_error;
at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }
// Runs `f`; on a C++ exception keeps its message for supernet_last_error and returns 1.
template <typename F> int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception &e) {
    last_error = e.what();
    return 1;
  }
}
} // namespace

extern "C" {

const char *supernet_last_error() { return last_error.c_str(); }

// dtype: 0 float32, 1 bfloat16, 2 float16. Returns the previous state in *prev_enabled and
// *prev_dtype (same coding, -1 for another dtype).
int supernet_autocast_set(int cuda, int enabled, int dtype, int *prev_enabled,
                          int *prev_dtype) {
  return guarded([&] {
    auto t = device_type(cuda);
    *prev_enabled = at::autocast::is_autocast_enabled(t) ? 1 : 0;
    auto d = at::autocast::get_autocast_dtype(t);
    *prev_dtype = d == at::kFloat ? 0 : d == at::kBFloat16 ? 1 : d == at::kHalf ? 2 : -1;
    at::ScalarType want = dtype == 1 ? at::kBFloat16 : dtype == 2 ? at::kHalf : at::kFloat;
    if (dtype >= 0) at::autocast::set_autocast_dtype(t, want);
    at::autocast::set_autocast_enabled(t, enabled != 0);
  });
}

int supernet_autocast_increment_nesting() { return at::autocast::increment_nesting(); }

// Clears the cast cache when the outermost region ends, as torch.autocast's __exit__ does.
void supernet_autocast_decrement_nesting() {
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
}

int supernet_cudnn_configure(int benchmark, int deterministic) {
  return guarded([&] {
    auto &ctx = at::globalContext();
    ctx.setBenchmarkCuDNN(benchmark != 0);
    ctx.setDeterministicCuDNN(deterministic != 0);
    // warn_only: an op without a deterministic CUDA kernel warns instead of failing.
    ctx.setDeterministicAlgorithms(deterministic != 0, true);
  });
}

// TensorFloat-32 in cuDNN convolutions (PyTorch's default: on) and cuBLAS matmuls
// (default: off); `on` sets both.
int supernet_set_tf32(int on) {
  return guarded([&] {
    auto &ctx = at::globalContext();
    ctx.setAllowTF32CuDNN(on != 0);
    ctx.setAllowTF32CuBLAS(on != 0);
  });
}

int supernet_cudnn_state(int *benchmark, int *deterministic, int *algorithms) {
  return guarded([&] {
    auto &ctx = at::globalContext();
    *benchmark = ctx.benchmarkCuDNN();
    *deterministic = ctx.deterministicCuDNN();
    *algorithms = ctx.deterministicAlgorithms();
  });
}

// out: [allocated current, allocated peak, reserved current, reserved peak] in bytes (the
// aggregate pool, as torch.cuda.memory_stats()["*_bytes.all.*"]).
int supernet_cuda_allocator_stats(int device, int64_t *out) {
  return guarded([&] {
    auto *a = c10::getDeviceAllocator(at::kCUDA);
    auto s = a->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    auto all = static_cast<size_t>(c10::CachingDeviceAllocator::StatType::AGGREGATE);
    out[0] = s.allocated_bytes[all].current;
    out[1] = s.allocated_bytes[all].peak;
    out[2] = s.reserved_bytes[all].current;
    out[3] = s.reserved_bytes[all].peak;
  });
}

int supernet_cuda_reset_peak(int device) {
  return guarded([&] {
    c10::getDeviceAllocator(at::kCUDA)->resetPeakStats(static_cast<c10::DeviceIndex>(device));
  });
}

// cudaMemGetInfo through the CUDA allocator: free and total bytes of the device.
int supernet_cuda_mem_info(int device, uint64_t *free_bytes, uint64_t *total_bytes) {
  return guarded([&] {
    auto info = c10::getDeviceAllocator(at::kCUDA)->getMemoryInfo(
        static_cast<c10::DeviceIndex>(device));
    *free_bytes = info.first;
    *total_bytes = info.second;
  });
}
}
