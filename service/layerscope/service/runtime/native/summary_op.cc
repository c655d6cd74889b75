// LayerscopeSummary: every statistic of one float32 tensor from a single read of it.
//
// TensorFlow's own reductions each read the activation again (sum, squares, min, max, zeros, activity,
// histogram: seven passes over memory). This kernel reads it once, in blocks that stay in L1: the moments,
// extremes and zero count in float lanes the compiler vectorises, the per-unit activity from the same
// block while it is still in cache, and the rare block with a NaN or Inf again on a masked path. The
// histogram needs the range first, so it bins a second, small read: a fixed, deterministic sample of
// aligned 16-value blocks (its size is returned), or every value when the caller asks for exact.
//
// Built at first use against tf.sysconfig's flags (runtime/native/build.py); -ffp-contract=off keeps the
// bin edges bit-identical to NumPy's (no fused multiply-add in `i * step + low`).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "binner.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"

namespace {

using tensorflow::int64;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

using layerscope::Binner;
using layerscope::kLanes;
constexpr int64_t kBlock = 4096;      // floats per block: 16 KiB, read twice from L1 (moments, activity)
constexpr int64_t kSerialBelow = 1 << 16;  // smaller tensors are not worth waking the thread pool for

struct Partial {
  double sum = 0.0;     // of (x - pivot), finite values only
  double squares = 0.0; // of (x - pivot)^2
  float low = std::numeric_limits<float>::infinity();
  float high = -std::numeric_limits<float>::infinity();
  int64_t zeros = 0, nan = 0, posinf = 0, neginf = 0, finite = 0;
  std::vector<int64_t> active;  // per unit: positions where x > 0

  void Merge(const Partial& o) {
    sum += o.sum;
    squares += o.squares;
    low = std::min(low, o.low);
    high = std::max(high, o.high);
    zeros += o.zeros;
    nan += o.nan;
    posinf += o.posinf;
    neginf += o.neginf;
    finite += o.finite;
    for (size_t u = 0; u < active.size(); ++u) active[u] += o.active[u];
  }
};

// The masked path, for a block that holds a NaN or an Inf (or values whose squares overflow a float).
void MaskedBlock(const float* x, int64_t n, float pivot, Partial* p) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (std::isnan(v)) {
      ++p->nan;
    } else if (std::isinf(v)) {
      ++(v > 0 ? p->posinf : p->neginf);
    } else {
      const double d = static_cast<double>(v) - pivot;
      p->sum += d;
      p->squares += d * d;
      p->low = std::min(p->low, v);
      p->high = std::max(p->high, v);
      p->zeros += (v == 0.0f);
      ++p->finite;
    }
  }
}

// Per-unit positive counts over n values whose first belongs to unit `first_unit`, a row segment at a time.
void Activity(const float* x, int64_t n, int64_t units, int64_t first_unit, int64_t* active) {
  int64_t i = 0, u = first_unit;
  while (i < n) {
    const int64_t len = std::min(units - u, n - i);
    for (int64_t k = 0; k < len; ++k) active[u + k] += (x[i + k] > 0.0f);
    i += len;
    u = 0;
  }
}

// The common path: every value finite. Float lanes over one block (at most 4096 values, so float sums
// lose nothing that matters), folded into doubles per block. A non-finite value poisons the lane sums,
// which is how the block learns to go again on the masked path. When the unit count divides the lane
// count (1, 2, 4, 8, 16 units), lane j always holds unit j % units and activity is counted in the same
// loop; otherwise it is a second read of the block, from L1.
void Block(const float* x, int64_t n, float pivot, int64_t units, int64_t first_unit, Partial* p) {
  float s[kLanes] = {}, q[kLanes] = {};
  float lo[kLanes], hi[kLanes];
  int32_t z[kLanes] = {}, up[kLanes] = {};
  std::fill(lo, lo + kLanes, std::numeric_limits<float>::infinity());
  std::fill(hi, hi + kLanes, -std::numeric_limits<float>::infinity());
  const int64_t whole = n - n % kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = x[i + j];
      const float d = v - pivot;
      s[j] += d;
      q[j] += d * d;
      lo[j] = v < lo[j] ? v : lo[j];
      hi[j] = v > hi[j] ? v : hi[j];
      z[j] += (v == 0.0f);
      up[j] += (v > 0.0f);
    }
  }
  for (int64_t i = whole; i < n; ++i) {
    const float v = x[i], d = v - pivot;
    s[0] += d;
    q[0] += d * d;
    lo[0] = v < lo[0] ? v : lo[0];
    hi[0] = v > hi[0] ? v : hi[0];
    z[0] += (v == 0.0f);
  }
  double sum = 0.0, squares = 0.0;
  for (int j = 0; j < kLanes; ++j) {
    sum += s[j];
    squares += q[j];
  }
  if (!std::isfinite(sum) || !std::isfinite(squares)) {
    MaskedBlock(x, n, pivot, p);
  } else {
    p->sum += sum;
    p->squares += squares;
    for (int j = 0; j < kLanes; ++j) {
      p->low = std::min(p->low, lo[j]);
      p->high = std::max(p->high, hi[j]);
      p->zeros += z[j];
    }
    p->finite += n;
  }
  if (units > 0 && kLanes % units == 0) {  // blocks start at multiples of 16: lane j is unit j % units
    for (int j = 0; j < kLanes; ++j) p->active[j % units] += up[j];
    for (int64_t i = whole; i < n; ++i) p->active[i % units] += (x[i] > 0.0f);
  } else if (units > 0) {
    Activity(x, n, units, first_unit, p->active.data());
  }
}

// Elements [begin, end) of the tensor, block by block; begin is a multiple of the block size.
void Range(const float* x, int64_t begin, int64_t end, int64_t units, float pivot, Partial* p) {
  for (int64_t b = begin; b < end; b += kBlock) {
    Block(x + b, std::min(kBlock, end - b), pivot, units, units > 0 ? b % units : 0, p);
  }
}

// Folds the four tables into histogram; returns how many values were binned.
int64_t Fold(const std::vector<int64_t>& tables, int bins, int64_t* histogram) {
  int64_t binned = 0;
  for (int t = 0; t < 4; ++t) {
    for (int b = 0; b < bins; ++b) {
      histogram[b] += tables[t * (bins + 1) + b];
      binned += tables[t * (bins + 1) + b];
    }
  }
  return binned;
}

int64_t Gcd(int64_t a, int64_t b) { return b == 0 ? a : Gcd(b, a % b); }

// The sampled histogram: `sample / 16` aligned blocks of 16 values, visited in the order k * stride mod
// slots. The stride is coprime with the slot count (so no block is visited twice) and near the golden
// section of it, so the blocks spread over the batch, the positions and (16 at a time) the units, without
// the aliasing a plain stride has with the unit or row length.
int64_t SampledHistogram(const float* x, int64_t n, int64_t sample, const Binner& binner, int64_t* histogram) {
  const int64_t slots = n / kLanes, picks = std::min(sample / kLanes, slots);
  int64_t stride = std::max<int64_t>(1, static_cast<int64_t>(slots * 0.6180339887498949));
  while (Gcd(stride, slots) != 1) ++stride;
  std::vector<int64_t> tables(4 * (binner.bins() + 1), 0);
  // The blocks are scattered over the tensor, so each is a cache miss: fetch the one kAhead visits on early.
  constexpr int64_t kAhead = 8;
  int64_t slot = 0, ahead = 0;
  for (int64_t k = 0; k < std::min(kAhead, picks); ++k) {
    ahead += stride;
    if (ahead >= slots) ahead -= slots;
  }
  for (int64_t k = 0; k < picks; ++k) {
    __builtin_prefetch(x + ahead * kLanes);
    binner.Add16(x + slot * kLanes, kLanes, tables.data());
    slot += stride;
    if (slot >= slots) slot -= slots;
    ahead += stride;
    if (ahead >= slots) ahead -= slots;
  }
  return Fold(tables, binner.bins(), histogram);
}

int64_t FullHistogram(OpKernelContext* context, const float* x, int64_t n, const Binner& binner,
                      int64_t* histogram) {
  auto* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
  const int64_t shards = n < kSerialBelow ? 1 : 4 * pool->NumThreads();
  const int64_t per_shard = ((n + shards - 1) / shards + kLanes - 1) / kLanes * kLanes;
  std::vector<std::vector<int64_t>> tables(shards, std::vector<int64_t>(4 * (binner.bins() + 1), 0));
  auto run = [&](int64_t shard) {
    const int64_t begin = std::min(n, shard * per_shard), end = std::min(n, begin + per_shard);
    for (int64_t i = begin; i < end; i += kLanes) {
      binner.Add16(x + i, static_cast<int>(std::min<int64_t>(kLanes, end - i)), tables[shard].data());
    }
  };
  if (shards == 1) {
    run(0);
  } else {
    pool->ParallelFor(shards, per_shard * 8, [&](int64_t first, int64_t last) {
      for (int64_t s = first; s < last; ++s) run(s);
    });
  }
  int64_t binned = 0;
  for (const auto& t : tables) binned += Fold(t, binner.bins(), histogram);
  return binned;
}

class SummaryOp : public OpKernel {
 public:
  explicit SummaryOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("bins", &bins_));
    OP_REQUIRES_OK(context, context->GetAttr("sample", &sample_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& input = context->input(0);
    const float* x = input.flat<float>().data();
    const int64_t n = input.NumElements();
    const int64_t units = input.dims() == 0 ? 0 : input.dim_size(input.dims() - 1);
    Partial total = Moments(context, x, n, units);

    Tensor *counts, *floats, *histogram, *activity;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({7}), &counts));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({5}), &floats));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({bins_}), &histogram));
    OP_REQUIRES_OK(context, context->allocate_output(3, TensorShape({units}), &activity));

    const bool any = total.finite > 0;
    const double finite = static_cast<double>(std::max<int64_t>(total.finite, 1));
    const float pivot = Pivot(x, n);
    const double shifted_mean = total.sum / finite;
    const double mean = shifted_mean + pivot;
    const double variance = std::max(total.squares / finite - shifted_mean * shifted_mean, 0.0);
    const double low = any ? total.low : 0.0, high = any ? total.high : 0.0;
    // A constant tensor's bins span [low, low + max(1, |low| * 1e-6)], as numpy summarize does.
    const double top = high > low ? high : low + std::max(1.0, std::fabs(low) * 1e-6);

    auto h = histogram->flat<int64_t>();
    std::fill(h.data(), h.data() + bins_, 0);
    const Binner binner(bins_, low, top);
    const bool sampled = sample_ > 0 && n > sample_;
    const int64_t binned = !any         ? 0
                           : sampled    ? SampledHistogram(x, n, sample_, binner, h.data())
                                        : FullHistogram(context, x, n, binner, h.data());

    auto c = counts->flat<int64_t>();
    c(0) = n;
    c(1) = total.zeros;
    c(2) = total.nan;
    c(3) = total.posinf;
    c(4) = total.neginf;
    c(5) = total.finite;
    c(6) = sampled ? binned : -1;  // -1: the histogram holds every finite value
    auto f = floats->flat<float>();
    f(0) = any ? static_cast<float>(mean) : 0.0f;
    f(1) = any ? static_cast<float>(std::sqrt(variance)) : 0.0f;
    f(2) = static_cast<float>(low);
    f(3) = static_cast<float>(high);
    f(4) = static_cast<float>(top);
    auto a = activity->flat<float>();
    const double positions = units > 0 ? static_cast<double>(n / units) : 1.0;
    for (int64_t u = 0; u < units; ++u) a(u) = positions > 0 ? total.active[u] / positions : 0.0f;
  }

 private:
  // The first value, when finite: sums of (x - pivot) keep the variance well conditioned when the mean
  // is large next to the spread, where sum(x^2)/n - mean^2 would cancel.
  static float Pivot(const float* x, int64_t n) { return n > 0 && std::isfinite(x[0]) ? x[0] : 0.0f; }

  static Partial Moments(OpKernelContext* context, const float* x, int64_t n, int64_t units) {
    const float pivot = Pivot(x, n);
    const int64_t block = kBlock;
    const int64_t blocks = (n + block - 1) / block;
    auto* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
    int64_t shards = n < kSerialBelow ? 1 : std::min<int64_t>(blocks, 4 * pool->NumThreads());
    // Each shard counts activity for every unit: with very wide rows, fewer shards keep that small.
    if (units > 0) shards = std::max<int64_t>(1, std::min<int64_t>(shards, n / (16 * units)));
    std::vector<Partial> partials(std::max<int64_t>(shards, 1));
    for (auto& p : partials) p.active.assign(units, 0);
    const int64_t per_shard = (blocks + shards - 1) / std::max<int64_t>(shards, 1);
    auto run = [&](int64_t shard) {
      const int64_t begin = std::min(n, shard * per_shard * block);
      const int64_t end = std::min(n, (shard + 1) * per_shard * block);
      Range(x, begin, end, units, pivot, &partials[shard]);
    };
    if (shards <= 1) {
      run(0);
    } else {
      // Each shard is a few hundred thousand floats at least: the cost tells the pool to spread them out.
      pool->ParallelFor(shards, per_shard * block * 4, [&](int64_t first, int64_t last) {
        for (int64_t s = first; s < last; ++s) run(s);
      });
    }
    Partial total;
    total.active.assign(units, 0);
    for (const auto& p : partials) total.Merge(p);
    return total;
  }

  int bins_;
  int64_t sample_;
};

}  // namespace

REGISTER_OP("LayerscopeSummary")
    .Input("x: float")
    .Attr("bins: int >= 1")
    .Attr("sample: int >= 0")
    .Output("counts: int64")
    .Output("floats: float")
    .Output("histogram: int64")
    .Output("activity: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      int bins;
      TF_RETURN_IF_ERROR(c->GetAttr("bins", &bins));
      c->set_output(0, c->Vector(7));
      c->set_output(1, c->Vector(5));
      c->set_output(2, c->Vector(bins));
      tensorflow::shape_inference::DimensionHandle units = c->MakeDim(0);
      if (c->RankKnown(c->input(0)) && c->Rank(c->input(0)) > 0) units = c->Dim(c->input(0), -1);
      c->set_output(3, c->Vector(units));
      return absl::OkStatus();
    })
    .Doc("Count, moments, extremes, zeros, non-finite counts, a histogram and per-unit activity of x, in one read.");

REGISTER_KERNEL_BUILDER(Name("LayerscopeSummary").Device(tensorflow::DEVICE_CPU), SummaryOp);
