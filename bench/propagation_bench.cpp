// Propagation benchmark: one object carried through N slices of cached
// embeddings (random ViT-B-shaped (1,256,64,64) embeddings; the cost is the
// prompt derivation, the mask decoder and the post-processing, which are the
// same for every SAM size), plus embedding throughput per slice.
//
//   medicosam_propagation_bench [--model CKPT] [--slices 100] [--size 512]
//       [--projection mask] [--threads 2] [--encode-slices 3] [--precision auto|fp32|bf16]
//
// --model defaults to the parity fixture (an official-size mask decoder);
// a ViT-B checkpoint gives the same propagation numbers and real encoder ones.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "medicosam/core/npy.hpp"
#include "medicosam/core/runtime_env.hpp"
#include "medicosam/model/sam.hpp"
#include "medicosam/segment/propagation.hpp"

using namespace medicosam;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU time of the whole process (all threads): on a shared machine the wall
// time depends on the other load, this does not (much).
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Decodes on per-slice embeddings held in memory; times the decoder calls.
class MemorySlices : public segment::SliceSegmenter {
 public:
  MemorySlices(predict::SamPredictor& p, std::vector<predict::Embedding> e, predict::Size2 size)
      : p_(p), e_(std::move(e)), size_(size) {}
  int num_slices() const override { return static_cast<int>(e_.size()); }
  predict::Size2 slice_size() const override { return size_; }
  int low_res_size() const override { return p_.model().low_res_size; }
  predict::Prediction predict(int z, const predict::Prompt& prompt, bool multimask) override {
    const auto t0 = Clock::now();
    p_.set_embedding(e_[z]);
    auto r = p_.predict(prompt, multimask);
    decode_seconds += since(t0);
    ++calls;
    return r;
  }
  // Batched (every walk's slice of a round in one decoder call) unless
  // `sequential`, which decodes one slice per call as before.
  std::vector<predict::Prediction> predict_many(const std::vector<Request>& requests, bool multimask) override {
    if (sequential) return SliceSegmenter::predict_many(requests, multimask);
    const auto t0 = Clock::now();
    std::vector<predict::Embedding> e;
    std::vector<predict::Prompt> prompts;
    for (const auto& r : requests) e.push_back(e_[r.z]), prompts.push_back(r.prompt);
    auto out = p_.predict_each(e, prompts, multimask);
    decode_seconds += since(t0);
    calls += static_cast<int>(requests.size());
    return out;
  }
  double decode_seconds = 0;
  int calls = 0;
  bool sequential = false;

 private:
  predict::SamPredictor& p_;
  std::vector<predict::Embedding> e_;
  predict::Size2 size_;
};

}  // namespace

int main(int argc, char** argv) try {
  tune_runtime_environment(argv);
  std::string model = std::string(MEDICOSAM_SHARED_DIR) + "/fixtures/sam_parity/sam_tiny_seed0.pth";
  int slices = 100, size = 512, threads = 2, encode_slices = 3;
  std::string projection = "mask", precision = "auto";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("missing value after " + a);
      return argv[++i];
    };
    if (a == "--model")
      model = next();
    else if (a == "--slices")
      slices = std::stoi(next());
    else if (a == "--size")
      size = std::stoi(next());
    else if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--projection")
      projection = next();
    else if (a == "--encode-slices")
      encode_slices = std::stoi(next());
    else if (a == "--precision")
      precision = next();
    else
      throw std::runtime_error("unknown argument " + a);
  }
  predict::SamPredictor predictor(model, {threads, "cpu", precision});
  const auto& m = predictor.model();
  std::printf("propagation bench: model %s (%s), %d thread(s), %d slices of %dx%d, projection %s, precision %s\n",
              m.path.c_str(), m.architecture.c_str(), threads, slices, size, size,
              projection.c_str(), m.precision.c_str());

  // Random ViT-B-shaped embeddings (the decoder input is (1,256,64,64) for every SAM).
  segment::Rng rng(1);
  std::vector<predict::Embedding> emb;
  const int C = m.embedding_channels, g = m.embedding_size;
  const predict::Size2 orig{size, size};
  const auto in = predict::preprocess_shape(size, size, m.img_size);
  for (int z = 0; z < std::min(slices, 8); ++z) {
    std::vector<float> v(static_cast<size_t>(C) * g * g);
    for (auto& x : v) x = static_cast<float>(rng.normal());
    emb.push_back(predict::Embedding::from_npy(make_npy(NpyType::kFloat32, {1, C, g, g}, v.data()),
                                               orig, in));
  }
  std::vector<predict::Embedding> stack;
  for (int z = 0; z < slices; ++z)
    stack.push_back(emb[z % emb.size()]);  // shared storage, distinct slices
  MemorySlices seg(predictor, stack, orig);

  // The start mask: a disc in the middle slice. With random weights the decoder's
  // masks are noise, so the IoU stop is disabled to force every slice to be decoded.
  std::vector<segment::BinaryMask> masks(slices, segment::BinaryMask(size, size));
  const int k = slices / 2;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      masks[k].data[size_t(y) * size + x] =
          (x - size / 2) * (x - size / 2) + (y - size / 2) * (y - size / 2) <
          (size / 6) * (size / 6);
  segment::PropagationOptions opt;
  opt.projection = segment::projection_flags(segment::parse_projection(projection));
  opt.iou_threshold = 0.0;
  // Warm-up (allocator, first-call overheads).
  segment::segment_from_mask(seg, k, masks[k], opt.projection, opt.box_extension);
  // Both directions from the middle slice: one slice per call (as before
  // batching) and both directions' slices in one call, side by side.
  const std::vector<segment::BinaryMask> start = masks;
  double wall[2] = {0, 0};
  for (const bool sequential : {true, false}) {
    masks = start;
    seg.sequential = sequential;
    seg.decode_seconds = 0;
    seg.calls = 0;
    auto t0 = Clock::now();
    const double cpu0 = cpu_seconds();
    const auto r = segment::segment_mask_in_volume(seg, masks, {k}, opt);
    const double total = since(t0);
    const double cpu = cpu_seconds() - cpu0;
    wall[sequential ? 0 : 1] = total;
    std::printf(
        "%s: propagated slices %d..%d: %d slices decoded in %.3f s total (%.1f ms/slice; "
        "decoder+post-processing %.1f ms/slice, prompts from masks %.1f ms/slice)\n",
        sequential ? "one slice per decoder call" : "both directions per decoder call", r.z_min, r.z_max,
        seg.calls, total, 1e3 * total / std::max(1, seg.calls), 1e3 * seg.decode_seconds / std::max(1, seg.calls),
        1e3 * (total - seg.decode_seconds) / std::max(1, seg.calls));
    std::printf("  CPU time %.3f s (%.1f ms/slice, all threads)\n", cpu, 1e3 * cpu / std::max(1, seg.calls));
    if (seg.calls < slices - 1) {
      std::printf("note: propagation ended early (the random decoder returned an empty mask)\n");
    }
  }
  std::printf("batched vs one per call: %.2fx\n", wall[0] / wall[1]);

  // Where a decoder call goes: a ViT-B-configured SAM with random weights, box +
  // mask prompt (the `mask` projection), stages timed separately (median of 10).
  {
    torch::InferenceMode guard;
    model::Sam sam(model::SamConfig::vit_b());
    sam->eval();
    sam->mask_decoder->set_precision(model::resolve_precision(precision, false));
    // Channels-last embedding and positional encoding, as SamPredictor keeps them.
    auto emb = torch::randn({1, 256, 64, 64}).contiguous(at::MemoryFormat::ChannelsLast);
    auto pe = sam->prompt_encoder->dense_pe().contiguous(at::MemoryFormat::ChannelsLast);
    auto boxes = torch::tensor({100.f, 120.f, 400.f, 380.f}).view({1, 4});
    auto mask = torch::randn({1, 1, 256, 256});
    std::vector<double> t_prompt, t_transformer, t_upscale, t_post;
    for (int i = 0; i < 12; ++i) {
      auto t = Clock::now();
      auto [sparse, dense] = sam->prompt_encoder->forward({}, {}, boxes, mask);
      const double a = since(t);
      t = Clock::now();
      auto& dec = *sam->mask_decoder;
      auto tokens = torch::cat({dec.iou_token->weight, dec.mask_tokens->weight}, 0).unsqueeze(0);
      tokens = torch::cat({tokens, sparse}, 1);
      auto [hs, keys] = dec.transformer->forward(emb + dense, pe, tokens);
      const double b = since(t);
      t = Clock::now();
      std::vector<torch::Tensor> hyper;
      for (int64_t k = 0; k < dec.num_mask_tokens; ++k) {
        hyper.push_back(dec.output_hypernetworks_mlps[k]->as<model::HeadMLPImpl>()->forward(
            hs.select(1, 1 + k)));
      }
      auto low = dec.upscale_and_project(keys, torch::stack(hyper, 1), 64, 64);
      const double c = since(t);
      t = Clock::now();
      auto hires = sam->postprocess_masks(low.narrow(1, 0, 1), 1024, 1024, size, size);
      auto bin = (hires > 0).to(torch::kUInt8).contiguous();
      const double d = since(t);
      if (i >= 2)
        t_prompt.push_back(a), t_transformer.push_back(b), t_upscale.push_back(c),
            t_post.push_back(d);
    }
    auto med = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return 1e3 * v[v.size() / 2];
    };
    std::printf(
        "decoder stages (ViT-B config, box + mask prompt): prompt encoder %.1f ms, two-way "
        "transformer %.1f ms, "
        "upscaling + hypernetworks %.1f ms, post-processing to %dx%d %.1f ms\n",
        med(t_prompt), med(t_transformer), med(t_upscale), size, size, med(t_post));
  }

  if (encode_slices > 0) {
    std::vector<uint8_t> img(static_cast<size_t>(size) * size * 3);
    for (auto& v : img) v = static_cast<uint8_t>(rng.uniform_int(256));
    predictor.encode(img.data(), size, size, 3);  // warm-up
    auto t0 = Clock::now();
    for (int i = 0; i < encode_slices; ++i) predictor.encode(img.data(), size, size, 3);
    std::printf("embedding: %.0f ms per %dx%d slice (%s encoder, median of %d)\n",
                1e3 * since(t0) / encode_slices, size, size, m.architecture.c_str(), encode_slices);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "medicosam_propagation_bench: error: %s\n", e.what());
  return 2;
}
