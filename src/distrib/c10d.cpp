// C ABI over PyTorch's c10d (compiled into libtorch_cpu): the TCPStore rendezvous and
// ProcessGroupGloo's collectives on at::Tensor. No collective algorithm lives here: every
// call is one c10d call. Errors come back as malloc'd strings (sn_dist_free_string).
//
// ProcessGroupGloo.hpp includes gloo headers that the torch wheel does not ship; Debian's
// libgloo-dev provides them. They are only parsed: every gloo object of the class sits
// behind a shared_ptr, so its layout does not depend on the gloo version, and all code
// that touches gloo runs inside libtorch.
#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

char* dup(const std::string& s) { return strdup(s.c_str()); }

struct Group {
  int rank = 0;
  int world = 1;
  std::string host;
  int port = 0;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  // Liveness: a thread adds 1 to "hb/<rank>" every second through its own store client,
  // so that after a failed collective the survivors can tell which rank stopped.
  std::atomic<bool> stop{false};
  std::thread heartbeat;
};

template <class F>
int guard(char** err, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    *err = dup(e.what());
  } catch (...) {
    *err = dup("unknown C++ exception");
  }
  return 1;
}

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 1: return c10d::ReduceOp::MAX;
    default: return c10d::ReduceOp::SUM;
  }
}

c10::intrusive_ptr<c10d::TCPStore> client(const Group& g, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<uint16_t>(g.port);
  o.isServer = false;
  o.waitWorkers = false;
  o.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(g.host, o);
}

}  // namespace

extern "C" {

void sn_dist_free_string(char* s) { free(s); }

// Rendezvous on host:port (served by this process when `serve`: rank 0, unless torchrun's
// agent serves it), then the Gloo process group.
void* sn_dist_init(const char* host, int port, int rank, int world, int serve, long timeout_ms,
                   char** err) {
  auto* g = new Group();
  g->rank = rank;
  g->world = world;
  g->host = host;
  g->port = port;
  g->timeout = std::chrono::milliseconds(timeout_ms);
  int rc = guard(err, [&] {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(port);
    o.isServer = serve != 0;
    o.numWorkers = world;
    o.waitWorkers = true;
    o.timeout = g->timeout;
    g->store = c10::make_intrusive<c10d::TCPStore>(g->host, o);
    auto opts = c10d::ProcessGroupGloo::Options::create_default(g->timeout);
    g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, world, opts);
    auto hb = client(*g, g->timeout);
    std::string key = "hb/" + std::to_string(rank);
    hb->add(key, 1);
    g->heartbeat = std::thread([g, hb, key] {
      while (!g->stop.load()) {
        for (int i = 0; i < 10 && !g->stop.load(); i++)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        try {
          hb->add(key, 1);
        } catch (...) {
          return;  // the store (rank 0) is gone; the next collective reports it
        }
      }
    });
  });
  if (rc != 0) {
    delete g;
    return nullptr;
  }
  return g;
}

void sn_dist_destroy(void* h) {
  auto* g = static_cast<Group*>(h);
  g->stop.store(true);
  if (g->heartbeat.joinable()) g->heartbeat.join();
  delete g;
}

// In place on every tensor (one call for the list): op 0 sum, 1 max.
int sn_dist_allreduce(void* h, at::Tensor** ts, int n, int op, char** err) {
  auto* g = static_cast<Group*>(h);
  return guard(err, [&] {
    c10d::AllreduceOptions o;
    o.reduceOp = reduce_op(op);
    for (int i = 0; i < n; i++) {
      std::vector<at::Tensor> v{*ts[i]};
      g->pg->allreduce(v, o)->wait();
    }
  });
}

int sn_dist_broadcast(void* h, at::Tensor** ts, int n, int root, char** err) {
  auto* g = static_cast<Group*>(h);
  return guard(err, [&] {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    for (int i = 0; i < n; i++) {
      std::vector<at::Tensor> v{*ts[i]};
      g->pg->broadcast(v, o)->wait();
    }
  });
}

// out[r] = input of rank r; `out` holds world tensors shaped like `input`.
int sn_dist_allgather(void* h, at::Tensor* input, at::Tensor** out, char** err) {
  auto* g = static_cast<Group*>(h);
  return guard(err, [&] {
    std::vector<at::Tensor> in{*input};
    std::vector<std::vector<at::Tensor>> outs(1);
    for (int i = 0; i < g->world; i++) outs[0].push_back(*out[i]);
    g->pg->allgather(outs, in)->wait();
  });
}

// After a failed collective: the ranks whose heartbeat did not advance over `wait_ms`
// (written into `stopped`, count returned); -1 when the store itself is unreachable
// (rank 0, which serves it, is gone).
int sn_dist_stopped_ranks(void* h, long wait_ms, int* stopped) {
  auto* g = static_cast<Group*>(h);
  try {
    auto c = client(*g, std::chrono::milliseconds(std::min(wait_ms, 5000L)));
    std::vector<int64_t> before(g->world);
    for (int r = 0; r < g->world; r++) before[r] = c->add("hb/" + std::to_string(r), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    int n = 0;
    for (int r = 0; r < g->world; r++) {
      if (r == g->rank) continue;
      if (c->add("hb/" + std::to_string(r), 0) == before[r]) stopped[n++] = r;
    }
    return n;
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
