#include "medicosam/train/trainer.hpp"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "medicosam/checkpoint/checkpoint.hpp"
#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/model/save.hpp"
#include "medicosam/model/sam.hpp"
#include "medicosam/segment/prompt_sampling.hpp"
#include "medicosam/train/batches.hpp"
#include "medicosam/train/curves.hpp"
#include "medicosam/train/distributed.hpp"
#include "medicosam/train/interactive_step.hpp"
#include "medicosam/train/run_state.hpp"
#include "medicosam/train/semantic_trainer.hpp"

namespace medicosam::train {
namespace fs = std::filesystem;
namespace F = torch::nn::functional;
using torch::Tensor;
using Clock = std::chrono::steady_clock;

model::SamConfig architecture_config(const nlohmann::json& a) {
  const std::string preset = a.value("preset", std::string("vit_b"));
  model::SamConfig c = preset == "vit_l"   ? model::SamConfig::vit_l()
                       : preset == "vit_h" ? model::SamConfig::vit_h()
                                           : model::SamConfig::vit_b();
  auto& e = c.encoder;
  e.img_size = a.value("img_size", e.img_size);
  e.patch_size = a.value("patch_size", e.patch_size);
  e.embed_dim = a.value("embed_dim", e.embed_dim);
  e.depth = a.value("depth", e.depth);
  e.num_heads = a.value("num_heads", e.num_heads);
  e.mlp_dim = static_cast<int64_t>(a.value("mlp_ratio", 4.0) * e.embed_dim);
  e.window_size = a.value("window_size", e.window_size);
  if (a.contains("global_attn_indexes"))
    e.global_attn_indexes = a["global_attn_indexes"].get<std::vector<int64_t>>();
  e.out_chans = a.value("out_chans", e.out_chans);
  c.prompt_embed_dim = e.out_chans;
  c.mask_in_chans = a.value("mask_in_chans", c.mask_in_chans);
  auto& d = c.decoder;
  d.transformer_dim = e.out_chans;
  d.transformer_depth = a.value("decoder_depth", d.transformer_depth);
  d.num_heads = a.value("decoder_heads", d.num_heads);
  d.mlp_dim = a.value("decoder_mlp_dim", d.mlp_dim);
  d.iou_head_hidden_dim = a.value("iou_head_hidden_dim", e.out_chans);
  auto bad = [](const std::string& why) { return InputError("training architecture: " + why); };
  if (e.img_size % e.patch_size != 0) throw bad("img_size must be a multiple of patch_size");
  if (e.embed_dim % e.num_heads != 0) throw bad("embed_dim must be divisible by num_heads");
  if (e.out_chans % 8 != 0 || (e.out_chans / d.attention_downsample_rate) % d.num_heads != 0) {
    throw bad("out_chans must be a multiple of 8 and of 2 * decoder_heads");
  }
  return c;
}

namespace {

// ------------------------------------------------------------ mixed precision

// bf16 autocast (no loss scaling needed for bf16): on CUDA, and on CPUs that
// compute bf16 natively (avx512_bf16 / AMX: oneDNN's bf16 GEMMs, batched
// attention included, run several times faster than fp32 BLAS there; emulated
// bf16 would be slower, so other CPUs train in fp32). Weights, gradients and
// optimiser state stay fp32; autocast runs the matmuls and convolutions in bf16.
bool autocast_wanted(bool mixed_precision, const torch::Device& dev) {
  return mixed_precision && (dev.is_cuda() || model::cpu_has_native_bf16());
}

class AutocastScope {
 public:
  AutocastScope(bool on, const torch::Device& dev) : on_(on), cuda_(dev.is_cuda()) {
    if (!on_) return;
#if (TORCH_VERSION_MAJOR > 2) || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    const auto type = cuda_ ? at::kCUDA : at::kCPU;
    at::autocast::set_autocast_enabled(type, true);
    at::autocast::set_autocast_dtype(type, at::kBFloat16);
#else
    if (cuda_) {
      at::autocast::set_enabled(true);
      at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    } else {
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    }
#endif
  }
  ~AutocastScope() {
    if (!on_) return;
#if (TORCH_VERSION_MAJOR > 2) || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(cuda_ ? at::kCUDA : at::kCPU, false);
#else
    if (cuda_) {
      at::autocast::set_enabled(false);
    } else {
      at::autocast::set_cpu_enabled(false);
    }
#endif
    at::autocast::clear_cache();
  }

 private:
  bool on_, cuda_;
};

}  // namespace

// --------------------------------------------------------------- the step
// (declared in interactive_step.hpp: the joint objective runs it too)

Tensor images_tensor(const std::vector<ModelInput>& images, const torch::Device& dev) {
  const int S = images.front().size;
  auto t = torch::empty({static_cast<int64_t>(images.size()), S, S, 3}, torch::kUInt8);
  for (size_t i = 0; i < images.size(); ++i) {
    std::memcpy(t[i].data_ptr<uint8_t>(), images[i].image.data(), images[i].image.size());
  }
  return t.permute({0, 3, 1, 2}).to(dev);
}

namespace {

// Targets (N,1,G,G) of the objects and of the valid (non-padding) image
// regions on the loss grid G: area-averaged from the input grid, so a pixel of
// the loss grid holds the fraction of it that is object / image.
std::pair<Tensor, Tensor> object_targets(const Batch& b, int grid, const torch::Device& dev) {
  const int S = b.images.front().size;
  const int64_t N = static_cast<int64_t>(b.objects.size());
  auto gt = torch::empty({N, 1, S, S}, torch::kUInt8);
  auto valid = torch::zeros({N, 1, S, S}, torch::kFloat32);
  for (int64_t n = 0; n < N; ++n) {
    const auto& o = b.objects[n];
    std::memcpy(gt[n].data_ptr<uint8_t>(), o.mask.data.data(), o.mask.data.size());
    const auto& img = b.images[o.image];
    valid[n][0].slice(0, 0, img.height).slice(1, 0, img.width).fill_(1.0f);
  }
  auto g = gt.to(torch::kFloat32), v = valid;
  if (grid != S) {
    const std::vector<int64_t> size{grid, grid};
    g = F::adaptive_avg_pool2d(g, F::AdaptiveAvgPool2dFuncOptions(size));
    v = F::adaptive_avg_pool2d(v, F::AdaptiveAvgPool2dFuncOptions(size));
  }
  return {g.to(dev), v.to(dev)};
}

// Dice loss per output mask (torch_em DiceLoss: 1 - 2 sum(p t) / sum(p^2 + t^2)).
Tensor dice_loss(const Tensor& p, const Tensor& t) {
  auto inter = (p * t).sum({2, 3});
  auto denom = (p * p).sum({2, 3}) + (t * t).sum({2, 3});
  return 1 - 2 * inter / denom.clamp_min(1e-7);
}

}  // namespace

// One training step's loss over this process's part of the batch, normalised
// by the global batch size so that summing gradients over processes gives the
// gradient of the global mean.
Tensor step_loss(model::SamImpl& sam, const Batch& b, const TrainConfig& c, int global_batch,
                 int first_slot, const torch::Device& dev, StepStats& stats) {
  const int S = b.images.front().size;
  const int64_t N = static_cast<int64_t>(b.objects.size());
  const int64_t it = b.iteration;
  // Each image's loss is the mean over its objects; the step loss is the sum
  // over images divided by the global batch size.
  std::vector<float> wv(N);
  for (int64_t n = 0; n < N; ++n)
    wv[n] = 1.0f / (b.objects[n].objects_in_image * static_cast<float>(global_batch));
  const auto weight = torch::tensor(wv).to(dev);

  auto emb = sam.image_encoder->forward(sam.preprocess(images_tensor(b.images, dev)));
  std::vector<int64_t> owner(N);
  for (int64_t n = 0; n < N; ++n) owner[n] = b.objects[n].image;
  auto emb_obj = emb.index_select(0, torch::tensor(owner).to(dev));
  const int64_t low_res = sam.config.low_res_size();
  const int G = c.loss_size > 0 ? std::min(c.loss_size, S)
                                : static_cast<int>(std::min<int64_t>(S, 2 * low_res));
  auto [gt, valid] = object_targets(b, G, dev);
  // Valid (non-padding) pixels per object, for the cross-entropy mean.
  const auto valid_pixels = c.bce_weight > 0 ? valid.sum({2, 3}).clamp_min(1e-7) : Tensor();

  // Randomness of this step: identical for every world size (keyed by global slots).
  const bool point_start = it % 2 == 0;
  const bool use_masks = segment::Rng(seed_mix(c.seed ^ 0x6d61736bull, static_cast<uint64_t>(it)))
                             .bernoulli(c.mask_prob);
  std::vector<segment::Rng> rngs;
  for (int64_t n = 0; n < N; ++n) {
    const uint64_t slot = static_cast<uint64_t>(first_slot + b.objects[n].image);
    rngs.emplace_back(seed_mix(c.seed ^ 0x636c69636bull, static_cast<uint64_t>(it),
                               (slot << 16) | b.objects[n].index_in_image));
  }

  std::vector<float> coords;
  std::vector<int64_t> labels;
  int64_t npoints = 0;
  Tensor boxes;
  if (point_start) {
    for (const auto& o : b.objects) {
      coords.insert(coords.end(),
                    {static_cast<float>(o.start_point.x), static_cast<float>(o.start_point.y)});
      labels.push_back(1);
    }
    npoints = 1;
  } else {
    std::vector<float> bx;
    for (const auto& o : b.objects)
      bx.insert(bx.end(), {float(o.box.x0), float(o.box.y0), float(o.box.x1), float(o.box.y1)});
    boxes = torch::tensor(bx).view({N, 4}).to(dev);
  }

  Tensor mask_input, total;
  const auto pe = sam.prompt_encoder->dense_pe();
  for (int i = 0; i < c.sub_iterations; ++i) {
    const bool multimask = i == 0 && point_start;
    Tensor pc, pl;
    if (npoints > 0) {
      pc = torch::tensor(coords).view({N, npoints, 2}).to(dev);
      pl = torch::tensor(labels).view({N, npoints}).to(dev);
    }
    auto [sparse, dense] = sam.prompt_encoder->forward(pc, pl, boxes, mask_input);
    auto [low, iou_pred] = sam.mask_decoder->forward(emb_obj, pe, sparse, dense, multimask);
    low = low.to(torch::kFloat32);
    iou_pred = iou_pred.to(torch::kFloat32);
    auto up = F::interpolate(low, F::InterpolateFuncOptions()
                                      .size(std::vector<int64_t>{G, G})
                                      .mode(torch::kBilinear)
                                      .align_corners(false));
    auto p = torch::sigmoid(up) * valid;
    auto per_mask = dice_loss(p, gt);  // (N, M)
    if (c.bce_weight > 0) {
      auto bce = F::binary_cross_entropy_with_logits(
          up, gt.expand_as(up),
          F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
      per_mask = per_mask + c.bce_weight * (bce * valid).sum({2, 3}) / valid_pixels;
    }
    auto mask_loss = std::get<0>(per_mask.min(1));  // (N)
    Tensor true_iou;
    {
      torch::NoGradGuard ng;
      auto bin = (p > 0.5).to(torch::kFloat32);
      auto t = (gt > 0.5).to(torch::kFloat32);
      auto inter = (bin * t).sum({2, 3});
      auto uni = ((bin + t) > 0).to(torch::kFloat32).sum({2, 3});
      true_iou = inter / uni.clamp_min(1e-7);
    }
    auto iou_loss = (iou_pred - true_iou).pow(2).mean(1);  // (N)
    auto l = ((mask_loss + iou_loss) * weight).sum();
    total = total.defined() ? total + l : l;
    stats.mask_loss += (mask_loss.detach() * weight).sum().item<double>() / c.sub_iterations;
    stats.iou_loss += (iou_loss.detach() * weight).sum().item<double>() / c.sub_iterations;

    if (i + 1 == c.sub_iterations) break;
    // Corrective clicks from the mask the model would show (highest predicted IoU).
    Tensor chosen_low, pred_cpu;
    {
      torch::NoGradGuard ng;
      auto best = iou_pred.argmax(1);
      auto idx = torch::arange(N, best.options());
      chosen_low = low.index({idx, best}).unsqueeze(1).detach();
      // Clicks are placed on the input grid, where the objects are defined;
      // the padding is excluded as the reference crops it away.
      auto full = F::interpolate(chosen_low, F::InterpolateFuncOptions()
                                                 .size(std::vector<int64_t>{S, S})
                                                 .mode(torch::kBilinear)
                                                 .align_corners(false));
      pred_cpu = (full.squeeze(1) > 0).to(torch::kUInt8).cpu().contiguous();
    }
    std::vector<float> new_coords;
    std::vector<int64_t> new_labels;
    for (int64_t n = 0; n < N; ++n) {
      segment::BinaryMask pred(S, S,
                               std::vector<uint8_t>(pred_cpu[n].data_ptr<uint8_t>(),
                                                    pred_cpu[n].data_ptr<uint8_t>() + S * S));
      const auto& img = b.images[b.objects[n].image];
      for (int y = 0; y < S; ++y)
        for (int x = (y < img.height ? img.width : 0); x < S; ++x) pred.data[size_t(y) * S + x] = 0;
      auto pts = segment::corrective_points(b.objects[n].mask, pred, rngs[n]);
      while (pts.size() < 2)
        pts.push_back({0, 0, pts.empty() ? 1 : 0});  // degenerate (empty) object
      for (int64_t k = 0; k < npoints; ++k) {
        new_coords.push_back(coords[(n * npoints + k) * 2]);
        new_coords.push_back(coords[(n * npoints + k) * 2 + 1]);
        new_labels.push_back(labels[n * npoints + k]);
      }
      for (const auto& q : pts) {
        new_coords.insert(new_coords.end(), {static_cast<float>(q.x), static_cast<float>(q.y)});
        new_labels.push_back(q.label);
      }
    }
    coords = std::move(new_coords);
    labels = std::move(new_labels);
    npoints += 2;
    mask_input = use_masks ? chosen_low : Tensor();
  }
  auto loss = total / c.sub_iterations;
  stats.loss = loss.item<double>();
  return loss;
}

// ------------------------------------------------------------ validation

std::vector<ValItem> make_validation_set(const TrainConfig& c, int size) {
  std::vector<ValItem> items;
  if (c.val_data.empty() || c.val_images <= 0) return items;
  std::vector<std::unique_ptr<SampleSource>> sources;
  for (const auto& d : c.val_data) sources.push_back(open_dataset(d));
  // Round-robin over the datasets, in order: every dataset is represented.
  std::vector<size_t> next(sources.size(), 0);
  for (int64_t j = 0; static_cast<int64_t>(items.size()) < c.val_images; ++j) {
    bool any = false;
    for (size_t d = 0; d < sources.size() && static_cast<int64_t>(items.size()) < c.val_images;
         ++d) {
      if (next[d] >= sources[d]->size()) continue;
      any = true;
      ValItem v;
      v.input = to_model_input(sources[d]->get(next[d]++), size);
      std::vector<bool> seen(65536, false);
      for (auto id : v.input.instances) seen[id] = true;
      for (int id = 1; id < 65536 && static_cast<int>(v.objects.size()) < c.objects_per_image;
           ++id) {
        if (!seen[id]) continue;
        segment::BinaryMask m(size, size);
        for (size_t p = 0; p < m.data.size(); ++p) m.data[p] = v.input.instances[p] == id;
        v.objects.push_back(std::move(m));
      }
      if (v.objects.empty()) continue;
      v.mode = static_cast<int>(items.size() % 4);
      items.push_back(std::move(v));
    }
    if (!any) break;
  }
  return items;
}

ValResult validate(model::SamImpl& sam, const std::vector<ValItem>& items, const TrainConfig& c,
                   const torch::Device& dev) {
  ValResult r;
  if (items.empty()) return r;
  torch::NoGradGuard ng;
  sam.eval();
  std::array<double, 4> sum{};
  std::array<int64_t, 4> count{};
  double total = 0;
  int64_t total_n = 0;
  for (size_t j = 0; j < items.size(); ++j) {
    const auto& v = items[j];
    segment::Rng rng(seed_mix(c.seed ^ 0x76616cull, j));
    const int S = v.input.size;
    auto emb = sam.image_encoder->forward(sam.preprocess(images_tensor({v.input}, dev)));
    for (const auto& obj : v.objects) {
      std::vector<predict::Point> pts;
      std::optional<predict::Box> box;
      if (v.mode == 0) pts = segment::random_points(obj, 1, 0, 0, rng);
      if (v.mode == 1 || v.mode == 3) box = segment::bounding_box(obj);
      if (v.mode == 2 || v.mode == 3) {
        const int np = 1 + static_cast<int>(rng.uniform_int(4));
        int nn = static_cast<int>(rng.uniform_int(5));
        if (np == 1 && nn == 0) nn = 1;
        pts = segment::random_points(obj, np, nn, 5, rng);
      }
      Tensor pc, pl, bx;
      if (!pts.empty()) {
        std::vector<float> cv;
        std::vector<int64_t> lv;
        for (const auto& q : pts) {
          cv.insert(cv.end(), {float(q.x), float(q.y)});
          lv.push_back(q.label);
        }
        pc = torch::tensor(cv).view({1, -1, 2}).to(dev);
        pl = torch::tensor(lv).view({1, -1}).to(dev);
      }
      if (box)
        bx = torch::tensor({float(box->x0), float(box->y0), float(box->x1), float(box->y1)})
                 .view({1, 4})
                 .to(dev);
      auto [sparse, dense] = sam.prompt_encoder->forward(pc, pl, bx, Tensor());
      auto [low, iou] = sam.mask_decoder->forward(emb, sam.prompt_encoder->dense_pe(), sparse,
                                                  dense, v.mode == 0);
      const auto best = iou.argmax(1).item<int64_t>();
      auto up = sam.postprocess_masks(
          low.index({torch::indexing::Slice(), torch::indexing::Slice(best, best + 1)})
              .to(torch::kFloat32),
          v.input.height, v.input.width, v.input.height, v.input.width);
      auto bin = (up[0][0] > 0).to(torch::kUInt8).cpu().contiguous();
      segment::BinaryMask pred(
          v.input.height, v.input.width,
          std::vector<uint8_t>(bin.data_ptr<uint8_t>(), bin.data_ptr<uint8_t>() + bin.numel()));
      segment::BinaryMask gt(v.input.height, v.input.width);
      for (int y = 0; y < v.input.height; ++y)
        for (int x = 0; x < v.input.width; ++x)
          gt.data[size_t(y) * v.input.width + x] = obj.data[size_t(y) * S + x];
      const double d = segment::dice(pred, gt);
      sum[v.mode] += d;
      ++count[v.mode];
      total += d;
      ++total_n;
    }
  }
  sam.train();
  for (int m = 0; m < 4; ++m) r.dice[m] = count[m] ? sum[m] / count[m] : 0.0;
  r.metric = 1.0 - total / std::max<int64_t>(1, total_n);
  return r;
}

namespace {

// ------------------------------------------------------------ checkpoints

checkpoint::PyValue model_state_value(model::SamImpl& sam, const std::string& prefix) {
  return tensors_value(model::sam_state_dict(sam), prefix);
}

void save_checkpoint(const std::string& path, model::SamImpl& sam, const AdamW& opt,
                     const RunState& st, const TrainConfig& c) {
  write_run_checkpoint(path, {{"model_state", model_state_value(sam, "sam.")}}, opt, st, c,
                       sam.config.architecture_name());
}

// The plain SAM weights of the run (what `medicosam export` would write), with
// the step and validation metric in the metadata.
void export_safetensors(const std::string& path, model::SamImpl& sam, const RunState& st) {
  model::SaveOptions opt;
  opt.format = model::WeightsFormat::kSafetensors;
  opt.metadata = {{"medicosam.iteration", std::to_string(st.iteration)},
                  {"medicosam.best_metric", std::to_string(st.best_metric)}};
  model::save_sam(path, sam, opt);
}

// Restores model, optimizer and counters from our own checkpoint.
RunState load_run_state(const std::string& path, model::SamImpl& sam, AdamW& opt) {
  checkpoint::PyValue root;
  const RunState st = read_run_checkpoint(path, opt, root);
  auto sd = checkpoint::value_to_state_dict(*root.get_if<checkpoint::PyValue::Dict>()->find("model_state"),
                                            "'" + path + "' model_state");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& nt : sd)
    tensors.emplace_back(nt.name.rfind("sam.", 0) == 0 ? nt.name.substr(4) : nt.name, nt.tensor);
  model::load_state_dict(sam, tensors, path);
  return st;
}

}  // namespace

TrainSummary run_training(const TrainConfig& cfg) {
  if (cfg.objective != "interactive") return run_semantic_training(cfg);  // semantic_trainer.cpp
  const auto t_start = Clock::now();
  const int world = cfg.world_size;
  const torch::Device dev = training_device(cfg);
  DataParallel dp(cfg.rank, world, cfg.master_addr, cfg.master_port, dev);
  const bool main = dp.is_main();

  // Model: fine-tune a checkpoint or start from scratch (deterministic init).
  torch::manual_seed(cfg.seed);
  model::Sam sam{nullptr};
  if (!cfg.init.empty()) {
    sam = model::load_sam(cfg.init, torch::kCPU).sam;
  } else {
    sam = model::Sam(architecture_config(cfg.architecture));
  }
  sam->to(dev);
  sam->train();
  AdamW opt;
  opt.beta1 = cfg.beta1;
  opt.beta2 = cfg.beta2;
  opt.eps = cfg.eps;
  opt.weight_decay = cfg.weight_decay;
  for (const auto& p : sam->named_parameters(true)) {
    const bool frozen = (cfg.freeze_image_encoder && p.key().rfind("image_encoder.", 0) == 0) ||
                        (cfg.freeze_prompt_encoder && p.key().rfind("prompt_encoder.", 0) == 0);
    p.value().set_requires_grad(!frozen);
    if (!frozen) opt.params.emplace_back(p.key(), p.value());
  }
  std::vector<Tensor> trainable;
  for (auto& [n, p] : opt.params) trainable.push_back(p);

  fs::create_directories(cfg.out_dir);
  const std::string latest = (fs::path(cfg.out_dir) / "latest.pt").string();
  const std::string best = (fs::path(cfg.out_dir) / "best.pt").string();
  const std::string train_log = (fs::path(cfg.out_dir) / "train_log.csv").string();
  const std::string val_log = (fs::path(cfg.out_dir) / "validation.csv").string();

  RunState st;
  if (cfg.resume && fs::exists(latest)) {
    st = load_run_state(latest, *sam, opt);
    if (main)
      std::fprintf(stderr, "resuming %s at step %lld\n", latest.c_str(),
                   static_cast<long long>(st.iteration));
  }
  dp.broadcast_parameters(trainable);
  if (main) {
    write_file_atomic((fs::path(cfg.out_dir) / "config.json").string(),
                      cfg.to_json().dump(2) + "\n");
    if (st.iteration == 0 || !fs::exists(train_log)) {
      write_file_atomic(
          train_log, "iteration,epoch,lr,loss,mask_loss,iou_loss,step_seconds,data_wait_seconds\n");
      write_file_atomic(val_log,
                        "iteration,epoch,metric,dice_point,dice_box,dice_points,dice_box_points\n");
    } else {
      truncate_log(train_log, st.iteration);
      truncate_log(val_log, st.iteration);
    }
  }

  // Data.
  std::vector<std::shared_ptr<SampleSource>> sources;
  std::vector<double> weights;
  for (const auto& d : cfg.train_data) {
    sources.push_back(open_dataset(d));
    weights.push_back(d.weight);
    if (main)
      std::fprintf(stderr, "train data %s: %zu items\n", sources.back()->name().c_str(),
                   sources.back()->size());
  }
  const int S = static_cast<int>(sam->config.encoder.img_size);
  BatchOptions bo;
  bo.input_size = S;
  bo.images = cfg.batch_size / world;
  bo.first_slot = cfg.rank * bo.images;
  bo.objects_per_image = cfg.objects_per_image;
  bo.box_distortion = cfg.box_distortion;
  bo.seed = cfg.seed;
  bo.augment = cfg.augment;
  const auto val_items = main ? make_validation_set(cfg, S) : std::vector<ValItem>{};

  TrainSummary summary;
  const int64_t first = st.iteration;
  const int64_t last =
      cfg.stop_after > 0 ? std::min(cfg.iterations, first + cfg.stop_after) : cfg.iterations;
  {
    BatchPrefetcher loader(sources, weights, bo, first, cfg.prefetch);
    Progress progress(cfg.iterations, "training", main, first);
    std::ofstream log(train_log, std::ios::app);
    double smoothed = -1;
    for (int64_t it = first; it < last; ++it) {
      const auto t0 = Clock::now();
      const double wait0 = loader.wait_seconds();
      Batch batch = loader.next();
      const double lr = learning_rate(cfg, it);
      StepStats stats;
      {
        AutocastScope autocast(autocast_wanted(cfg.mixed_precision, dev), dev);
        auto loss = step_loss(*sam, batch, cfg, cfg.batch_size, bo.first_slot, dev, stats);
        for (auto& p : trainable) p.mutable_grad() = Tensor();
        loss.backward();
      }
      dp.all_reduce_gradients(trainable);
      auto loss_t = torch::tensor({stats.loss, stats.mask_loss, stats.iou_loss}, torch::kFloat64);
      dp.all_reduce_sum(loss_t);
      stats.loss = loss_t[0].item<double>();
      stats.mask_loss = loss_t[1].item<double>();
      stats.iou_loss = loss_t[2].item<double>();
      if (cfg.grad_clip > 0) torch::nn::utils::clip_grad_norm_(trainable, cfg.grad_clip);
      opt.update(lr);
      st.iteration = it + 1;
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      st.train_time += secs;
      if (main) {
        log << st.iteration << "," << it / cfg.epoch_length << "," << lr << "," << stats.loss << ","
            << stats.mask_loss << "," << stats.iou_loss << "," << secs << ","
            << (loader.wait_seconds() - wait0) << "\n";
        log.flush();
        smoothed = smoothed < 0 ? stats.loss : 0.95 * smoothed + 0.05 * stats.loss;
        char note[96];
        std::snprintf(note, sizeof note, "loss %.4f lr %.2e", smoothed, lr);
        progress.set(st.iteration, note);
      }
      const bool epoch_end = st.iteration % cfg.epoch_length == 0 || st.iteration == cfg.iterations;
      if (epoch_end) {
        if (main) {
          const auto vr = validate(*sam, val_items, cfg, dev);
          st.current_metric = vr.metric;
          const bool improved = !val_items.empty() ? vr.metric < st.best_metric : true;
          if (improved) {
            st.best_metric = vr.metric;
            st.best_iteration = st.iteration;
          }
          std::ofstream vl(val_log, std::ios::app);
          vl << st.iteration << "," << (st.iteration - 1) / cfg.epoch_length << "," << vr.metric
             << "," << vr.dice[0] << "," << vr.dice[1] << "," << vr.dice[2] << "," << vr.dice[3]
             << "\n";
          save_checkpoint(latest, *sam, opt, st, cfg);
          if (improved) {
            save_checkpoint(best, *sam, opt, st, cfg);
            export_safetensors((fs::path(cfg.out_dir) / "best.safetensors").string(), *sam, st);
          }
          if (!val_items.empty()) {
            std::fprintf(stderr,
                         "%svalidation at step %lld: metric %.4f (Dice point %.3f box %.3f points "
                         "%.3f box+points %.3f)%s\n",
                         isatty(2) ? "\n" : "", static_cast<long long>(st.iteration), vr.metric,
                         vr.dice[0], vr.dice[1], vr.dice[2], vr.dice[3], improved ? " *best" : "");
          }
        }
        dp.barrier();
      }
    }
    summary.data_wait_seconds = loader.wait_seconds();
    if (main && last < cfg.iterations) {
      save_checkpoint(latest, *sam, opt, st, cfg);
      summary.stopped_early = true;
    }
    if (main) progress.finish();
  }
  if (main) {
    export_safetensors((fs::path(cfg.out_dir) / "latest.safetensors").string(), *sam, st);
    write_training_curves(cfg.out_dir);
  }
  dp.barrier();
  summary.iterations_done = st.iteration;
  summary.best_metric = st.best_metric;
  summary.best_iteration = st.best_iteration;
  summary.best_checkpoint = best;
  summary.latest_checkpoint = latest;
  summary.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  return summary;
}

}  // namespace medicosam::train
