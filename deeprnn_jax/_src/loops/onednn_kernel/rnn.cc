// One recurrent layer (LSTM or linear-before-reset GRU, one direction, float32) through
// oneDNN's fused RNN primitives, as two XLA FFI handlers: forward training (outputs,
// final carry and oneDNN's workspace) and backward (every input's gradient from the
// workspace). loops/onednn.py calls them through jax.ffi.ffi_call inside a
// jax.custom_vjp, one call per layer.
//
// Layouts (oneDNN's names): x [T, B, F] tnc; h0, c0 [B, H] (ldnc with L = D = 1);
// w_layer [F, G * H] and w_iter [H, G * H] ldigo, gate blocks in oneDNN's order (LSTM
// i, f, g, o: the library's; GRU u, r, n: the library's z, r, n, permuted in Python);
// bias [Gb * H] ldgo (GRU: four blocks, the last the candidate's recurrent bias).
//
// Buffers: the workspace (which the backward reads) is an XLA buffer, a result of the
// forward call sized at trace time by drnn_onednn_sizes. The scratchpads are one buffer
// kept by the thread that runs every oneDNN call (Runner), grown as needed: oneDNN
// allocates nothing per call, and its default per-thread scratchpad (unsafe under XLA's
// worker threads) is never used. Primitives are built once per shape and kept.

#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using dims = dnnl::memory::dims;

namespace {

constexpr int64_t kLSTM = 0, kGRU = 1;
constexpr size_t kAlign = 64;

size_t Aligned(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Shape {
  int64_t cell, T, B, F, H;
  bool operator<(const Shape& o) const {
    return std::tie(cell, T, B, F, H) < std::tie(o.cell, o.T, o.B, o.F, o.H);
  }
  int64_t gates() const { return cell == kLSTM ? 4 : 3; }
  int64_t bias_gates() const { return 4; }  // LSTM i, f, g, o; GRU u, r, n and n's recurrent bias
};

struct Descs {
  dnnl::memory::desc x, h, w_layer, w_iter, bias, y;
  dnnl::memory::desc w_layer_any, w_iter_any;
};

Descs MakeDescs(const Shape& s) {
  Descs d;
  d.x = {{s.T, s.B, s.F}, dt::f32, tag::tnc};
  d.h = {{1, 1, s.B, s.H}, dt::f32, tag::ldnc};
  d.w_layer = {{1, 1, s.F, s.gates(), s.H}, dt::f32, tag::ldigo};
  d.w_iter = {{1, 1, s.H, s.gates(), s.H}, dt::f32, tag::ldigo};
  d.w_layer_any = {{1, 1, s.F, s.gates(), s.H}, dt::f32, tag::any};
  d.w_iter_any = {{1, 1, s.H, s.gates(), s.H}, dt::f32, tag::any};
  d.bias = {{1, 1, s.bias_gates(), s.H}, dt::f32, tag::ldgo};
  d.y = {{s.T, s.B, s.H}, dt::f32, tag::tnc};
  return d;
}

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// Everything one shape needs, built once: the primitives, the backward's weight
// formats (oneDNN's backward wants its own, reached by reorders) and the buffer sizes.
struct Kernel {
  Descs d;
  dnnl::primitive fwd, bwd;
  dnnl::memory::desc workspace, fwd_scratch, bwd_scratch;
  dnnl::memory::desc bwd_w_layer, bwd_w_iter, bwd_dw_layer, bwd_dw_iter;
  dnnl::reorder to_bwd_w_layer, to_bwd_w_iter, from_bwd_dw_layer, from_bwd_dw_iter;
  bool reorder_w_layer, reorder_w_iter, reorder_dw_layer, reorder_dw_iter;

  // the backward call's scratch result: oneDNN's scratchpad, then the reordered weights
  size_t BwdScratchBytes() const {
    size_t n = Aligned(bwd_scratch.get_size());
    if (reorder_w_layer) n += Aligned(bwd_w_layer.get_size());
    if (reorder_w_iter) n += Aligned(bwd_w_iter.get_size());
    if (reorder_dw_layer) n += Aligned(bwd_dw_layer.get_size());
    if (reorder_dw_iter) n += Aligned(bwd_dw_iter.get_size());
    return n;
  }
};

template <typename Fwd, typename Bwd>
void Finish(Kernel& k, const typename Fwd::primitive_desc& fpd,
            const typename Bwd::primitive_desc& bpd) {
  auto& e = Engine();
  k.fwd = Fwd(fpd);
  k.bwd = Bwd(bpd);
  k.workspace = fpd.workspace_desc();
  k.fwd_scratch = fpd.scratchpad_desc();
  k.bwd_scratch = bpd.scratchpad_desc();
  k.bwd_w_layer = bpd.weights_layer_desc();
  k.bwd_w_iter = bpd.weights_iter_desc();
  k.bwd_dw_layer = bpd.diff_weights_layer_desc();
  k.bwd_dw_iter = bpd.diff_weights_iter_desc();
  k.reorder_w_layer = k.bwd_w_layer != k.d.w_layer;
  k.reorder_w_iter = k.bwd_w_iter != k.d.w_iter;
  k.reorder_dw_layer = k.bwd_dw_layer != k.d.w_layer;
  k.reorder_dw_iter = k.bwd_dw_iter != k.d.w_iter;
  if (k.reorder_w_layer) k.to_bwd_w_layer = dnnl::reorder({e, k.d.w_layer, e, k.bwd_w_layer});
  if (k.reorder_w_iter) k.to_bwd_w_iter = dnnl::reorder({e, k.d.w_iter, e, k.bwd_w_iter});
  if (k.reorder_dw_layer)
    k.from_bwd_dw_layer = dnnl::reorder({e, k.bwd_dw_layer, e, k.d.w_layer});
  if (k.reorder_dw_iter)
    k.from_bwd_dw_iter = dnnl::reorder({e, k.bwd_dw_iter, e, k.d.w_iter});
}

std::unique_ptr<Kernel> Build(const Shape& s) {
  auto k = std::make_unique<Kernel>();
  k->d = MakeDescs(s);
  const Descs& d = k->d;
  auto& e = Engine();
  auto attr = UserScratchpad();
  auto dir = dnnl::rnn_direction::unidirectional_left2right;
  auto fwd_kind = dnnl::prop_kind::forward_training;
  if (s.cell == kLSTM) {
    dnnl::lstm_forward::primitive_desc fpd(e, fwd_kind, dir, d.x, d.h, d.h, d.w_layer,
                                           d.w_iter, d.bias, d.y, d.h, d.h, attr);
    dnnl::lstm_backward::primitive_desc bpd(
        e, dnnl::prop_kind::backward, dir, d.x, d.h, d.h, d.w_layer_any, d.w_iter_any,
        d.bias, d.y, d.h, d.h, d.x, d.h, d.h, d.w_layer_any, d.w_iter_any, d.bias, d.y, d.h,
        d.h, fpd, attr);
    Finish<dnnl::lstm_forward, dnnl::lstm_backward>(*k, fpd, bpd);
  } else {
    dnnl::lbr_gru_forward::primitive_desc fpd(e, fwd_kind, dir, d.x, d.h, d.w_layer,
                                              d.w_iter, d.bias, d.y, d.h, attr);
    dnnl::lbr_gru_backward::primitive_desc bpd(
        e, dnnl::prop_kind::backward, dir, d.x, d.h, d.w_layer_any, d.w_iter_any, d.bias,
        d.y, d.h, d.x, d.h, d.w_layer_any, d.w_iter_any, d.bias, d.y, d.h, fpd, attr);
    Finish<dnnl::lbr_gru_forward, dnnl::lbr_gru_backward>(*k, fpd, bpd);
  }
  return k;
}

Kernel& Get(const Shape& s) {
  static std::mutex mu;
  static std::map<Shape, std::unique_ptr<Kernel>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[s];
  if (!slot) slot = Build(s);
  return *slot;
}

dnnl::memory Mem(const dnnl::memory::desc& d, const void* p) {
  return dnnl::memory(d, Engine(), const_cast<void*>(p));
}

// Every oneDNN call runs on this one thread: GNU OpenMP keeps a thread team per thread
// that opens parallel regions, so calls from XLA's several workers would each grow a
// team of their own, more threads than cores, all spinning or sleeping in turn.
class Runner {
 public:
  static Runner& Get() {
    static Runner* runner = new Runner();  // never destroyed: lives as long as the process
    return *runner;
  }
  // Runs `job` on the runner thread and waits; rethrows what it threw, as a runtime_error.
  void Run(const std::function<void()>& job) {
    std::unique_lock<std::mutex> lock(mu_);
    idle_.wait(lock, [&] { return job_ == nullptr; });
    job_ = &job;
    done_ = false;
    error_.clear();
    wake_.notify_all();
    idle_.wait(lock, [&] { return done_; });
    std::string error = error_;
    job_ = nullptr;
    idle_.notify_all();
    if (!error.empty()) throw std::runtime_error(error);
  }

 private:
  Runner() : thread_([this] { Loop(); }) { thread_.detach(); }
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return job_ != nullptr && !done_; });
      lock.unlock();
      std::string error;
      try {
        (*job_)();
      } catch (const std::exception& e) {
        error = e.what();
        if (error.empty()) error = "unknown oneDNN error";
      }
      lock.lock();
      error_ = error;
      done_ = true;
      idle_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable wake_, idle_;
  const std::function<void()>* job_ = nullptr;
  std::string error_;
  bool done_ = true;
  std::thread thread_;
};

// The scratchpad of the call running now: one buffer of the runner thread, grown to the
// largest call's need and kept, so that no call allocates (or page-faults) its own.
char* Scratch(size_t bytes) {
  static thread_local std::unique_ptr<char, decltype(&std::free)> buffer(nullptr, &std::free);
  static thread_local size_t capacity = 0;
  if (bytes > capacity) {
    capacity = Aligned(bytes);
    buffer.reset(static_cast<char*>(std::aligned_alloc(kAlign, capacity)));
    if (!buffer) throw std::runtime_error("out of memory for the oneDNN scratchpad");
  }
  return buffer.get();
}

Shape ShapeOf(int64_t cell, ffi::AnyBuffer x, ffi::AnyBuffer h0) {
  auto xd = x.dimensions();
  auto hd = h0.dimensions();
  return Shape{cell, xd[0], xd[1], xd[2], hd[1]};
}

ffi::Error CheckDims(ffi::AnyBuffer x, ffi::AnyBuffer h0) {
  if (x.dimensions().size() != 3 || h0.dimensions().size() != 2 ||
      x.dimensions()[1] != h0.dimensions()[0])
    return ffi::Error::InvalidArgument("drnn_onednn: expected x [T, B, F] and h0 [B, H]");
  return ffi::Error::Success();
}

ffi::Error Forward(int64_t cell, ffi::AnyBuffer x, ffi::AnyBuffer h0, ffi::AnyBuffer c0,
                   ffi::AnyBuffer w_layer, ffi::AnyBuffer w_iter, ffi::AnyBuffer bias,
                   ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> h_n,
                   ffi::Result<ffi::AnyBuffer> c_n, ffi::Result<ffi::AnyBuffer> workspace) {
  if (auto err = CheckDims(x, h0); err.failure()) return err;
  try {
    Kernel& k = Get(ShapeOf(cell, x, h0));
    const Descs& d = k.d;
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC_LAYER, Mem(d.x, x.untyped_data())},
        {DNNL_ARG_SRC_ITER, Mem(d.h, h0.untyped_data())},
        {DNNL_ARG_WEIGHTS_LAYER, Mem(d.w_layer, w_layer.untyped_data())},
        {DNNL_ARG_WEIGHTS_ITER, Mem(d.w_iter, w_iter.untyped_data())},
        {DNNL_ARG_BIAS, Mem(d.bias, bias.untyped_data())},
        {DNNL_ARG_DST_LAYER, Mem(d.y, y->untyped_data())},
        {DNNL_ARG_DST_ITER, Mem(d.h, h_n->untyped_data())},
        {DNNL_ARG_WORKSPACE, Mem(k.workspace, workspace->untyped_data())}};
    if (cell == kLSTM) {
      args[DNNL_ARG_SRC_ITER_C] = Mem(d.h, c0.untyped_data());
      args[DNNL_ARG_DST_ITER_C] = Mem(d.h, c_n->untyped_data());
    } else {
      std::memset(c_n->untyped_data(), 0, c_n->size_bytes());
    }
    Runner::Get().Run([&] {
      args[DNNL_ARG_SCRATCHPAD] = Mem(k.fwd_scratch, Scratch(k.fwd_scratch.get_size()));
      dnnl::stream stream(Engine());
      k.fwd.execute(stream, args);
      stream.wait();
    });
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("drnn_onednn forward: ") + e.what());
  }
  return ffi::Error::Success();
}

// The backward's weights and weight gradients: the caller's buffers, or, where oneDNN's
// backward wants another format, buffers in the scratch (after oneDNN's own scratchpad)
// that the weights are reordered into and the gradients out of. The gradients start at
// zero: oneDNN adds into them.
struct BwdWeights {
  dnnl::memory layer, iter, d_layer, d_iter;  // the caller's, ldigo
  dnnl::memory bwd_layer, bwd_iter, bwd_d_layer, bwd_d_iter;  // what the backward reads
};

BwdWeights PrepareWeights(const Kernel& k, dnnl::stream& stream, char* buf, const void* wl,
                          const void* wi, void* dwl, void* dwi) {
  size_t at = Aligned(k.bwd_scratch.get_size());
  auto take = [&](const dnnl::memory::desc& md) {
    dnnl::memory m(md, Engine(), buf + at);
    at += Aligned(md.get_size());
    return m;
  };
  BwdWeights w;
  w.layer = Mem(k.d.w_layer, wl);
  w.iter = Mem(k.d.w_iter, wi);
  w.d_layer = Mem(k.d.w_layer, dwl);
  w.d_iter = Mem(k.d.w_iter, dwi);
  w.bwd_layer = k.reorder_w_layer ? take(k.bwd_w_layer) : w.layer;
  w.bwd_iter = k.reorder_w_iter ? take(k.bwd_w_iter) : w.iter;
  w.bwd_d_layer = k.reorder_dw_layer ? take(k.bwd_dw_layer) : w.d_layer;
  w.bwd_d_iter = k.reorder_dw_iter ? take(k.bwd_dw_iter) : w.d_iter;
  if (k.reorder_w_layer) k.to_bwd_w_layer.execute(stream, w.layer, w.bwd_layer);
  if (k.reorder_w_iter) k.to_bwd_w_iter.execute(stream, w.iter, w.bwd_iter);
  std::memset(w.bwd_d_layer.get_data_handle(), 0, k.bwd_dw_layer.get_size());
  std::memset(w.bwd_d_iter.get_data_handle(), 0, k.bwd_dw_iter.get_size());
  return w;
}

ffi::Error Backward(int64_t cell, ffi::AnyBuffer x, ffi::AnyBuffer h0, ffi::AnyBuffer c0,
                    ffi::AnyBuffer w_layer, ffi::AnyBuffer w_iter, ffi::AnyBuffer bias,
                    ffi::AnyBuffer y, ffi::AnyBuffer h_n, ffi::AnyBuffer c_n,
                    ffi::AnyBuffer workspace, ffi::AnyBuffer dy, ffi::AnyBuffer dh_n,
                    ffi::AnyBuffer dc_n, ffi::Result<ffi::AnyBuffer> dx,
                    ffi::Result<ffi::AnyBuffer> dh0, ffi::Result<ffi::AnyBuffer> dc0,
                    ffi::Result<ffi::AnyBuffer> dw_layer, ffi::Result<ffi::AnyBuffer> dw_iter,
                    ffi::Result<ffi::AnyBuffer> dbias) {
  if (auto err = CheckDims(x, h0); err.failure()) return err;
  try {
    Kernel& k = Get(ShapeOf(cell, x, h0));
    const Descs& d = k.d;
    Runner::Get().Run([&] {
      dnnl::stream stream(Engine());
      char* buf = Scratch(k.BwdScratchBytes());
      BwdWeights w = PrepareWeights(k, stream, buf, w_layer.untyped_data(),
                                    w_iter.untyped_data(), dw_layer->untyped_data(),
                                    dw_iter->untyped_data());
      std::memset(dbias->untyped_data(), 0, dbias->size_bytes());  // oneDNN adds into it
      std::unordered_map<int, dnnl::memory> args = {
          {DNNL_ARG_SRC_LAYER, Mem(d.x, x.untyped_data())},
          {DNNL_ARG_SRC_ITER, Mem(d.h, h0.untyped_data())},
          {DNNL_ARG_WEIGHTS_LAYER, w.bwd_layer},
          {DNNL_ARG_WEIGHTS_ITER, w.bwd_iter},
          {DNNL_ARG_BIAS, Mem(d.bias, bias.untyped_data())},
          {DNNL_ARG_DST_LAYER, Mem(d.y, y.untyped_data())},
          {DNNL_ARG_DST_ITER, Mem(d.h, h_n.untyped_data())},
          {DNNL_ARG_WORKSPACE, Mem(k.workspace, workspace.untyped_data())},
          {DNNL_ARG_DIFF_DST_LAYER, Mem(d.y, dy.untyped_data())},
          {DNNL_ARG_DIFF_DST_ITER, Mem(d.h, dh_n.untyped_data())},
          {DNNL_ARG_DIFF_SRC_LAYER, Mem(d.x, dx->untyped_data())},
          {DNNL_ARG_DIFF_SRC_ITER, Mem(d.h, dh0->untyped_data())},
          {DNNL_ARG_DIFF_WEIGHTS_LAYER, w.bwd_d_layer},
          {DNNL_ARG_DIFF_WEIGHTS_ITER, w.bwd_d_iter},
          {DNNL_ARG_DIFF_BIAS, Mem(d.bias, dbias->untyped_data())},
          {DNNL_ARG_SCRATCHPAD, Mem(k.bwd_scratch, buf)}};
      if (cell == kLSTM) {
        args[DNNL_ARG_SRC_ITER_C] = Mem(d.h, c0.untyped_data());
        args[DNNL_ARG_DST_ITER_C] = Mem(d.h, c_n.untyped_data());
        args[DNNL_ARG_DIFF_DST_ITER_C] = Mem(d.h, dc_n.untyped_data());
        args[DNNL_ARG_DIFF_SRC_ITER_C] = Mem(d.h, dc0->untyped_data());
      } else {
        std::memset(dc0->untyped_data(), 0, dc0->size_bytes());
      }
      k.bwd.execute(stream, args);
      if (k.reorder_dw_layer) k.from_bwd_dw_layer.execute(stream, w.bwd_d_layer, w.d_layer);
      if (k.reorder_dw_iter) k.from_bwd_dw_iter.execute(stream, w.bwd_d_iter, w.d_iter);
      stream.wait();
    });
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("drnn_onednn backward: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DrnnOnednnForward, Forward,
                              ffi::Ffi::Bind()
                                  .Attr<int64_t>("cell")
                                  .Arg<ffi::AnyBuffer>()  // x
                                  .Arg<ffi::AnyBuffer>()  // h0
                                  .Arg<ffi::AnyBuffer>()  // c0
                                  .Arg<ffi::AnyBuffer>()  // w_layer
                                  .Arg<ffi::AnyBuffer>()  // w_iter
                                  .Arg<ffi::AnyBuffer>()  // bias
                                  .Ret<ffi::AnyBuffer>()  // y
                                  .Ret<ffi::AnyBuffer>()  // h_n
                                  .Ret<ffi::AnyBuffer>()  // c_n
                                  .Ret<ffi::AnyBuffer>());  // workspace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DrnnOnednnBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Attr<int64_t>("cell")
                                  .Arg<ffi::AnyBuffer>()  // x
                                  .Arg<ffi::AnyBuffer>()  // h0
                                  .Arg<ffi::AnyBuffer>()  // c0
                                  .Arg<ffi::AnyBuffer>()  // w_layer
                                  .Arg<ffi::AnyBuffer>()  // w_iter
                                  .Arg<ffi::AnyBuffer>()  // bias
                                  .Arg<ffi::AnyBuffer>()  // y
                                  .Arg<ffi::AnyBuffer>()  // h_n
                                  .Arg<ffi::AnyBuffer>()  // c_n
                                  .Arg<ffi::AnyBuffer>()  // workspace
                                  .Arg<ffi::AnyBuffer>()  // dy
                                  .Arg<ffi::AnyBuffer>()  // dh_n
                                  .Arg<ffi::AnyBuffer>()  // dc_n
                                  .Ret<ffi::AnyBuffer>()  // dx
                                  .Ret<ffi::AnyBuffer>()  // dh0
                                  .Ret<ffi::AnyBuffer>()  // dc0
                                  .Ret<ffi::AnyBuffer>()  // dw_layer
                                  .Ret<ffi::AnyBuffer>()  // dw_iter
                                  .Ret<ffi::AnyBuffer>());  // dbias

// Sizes in bytes, for the Python side to allocate at trace time: out[0] the workspace,
// out[1] the forward's scratch, out[2] the backward's. Returns 0, or -1 with the
// oneDNN error in `error` (at most `error_size` bytes) when the shape is unsupported.
extern "C" int drnn_onednn_sizes(int64_t cell, int64_t T, int64_t B, int64_t F, int64_t H,
                                 int64_t* out, char* error, int64_t error_size) {
  try {
    Kernel& k = Get(Shape{cell, T, B, F, H});
    out[0] = static_cast<int64_t>(k.workspace.get_size());
    out[1] = static_cast<int64_t>(k.fwd_scratch.get_size());
    out[2] = static_cast<int64_t>(k.BwdScratchBytes());
    return 0;
  } catch (const std::exception& e) {
    std::strncpy(error, e.what(), static_cast<size_t>(error_size - 1));
    error[error_size - 1] = '\0';
    return -1;
  }
}
