// Semantic and joint training (semantic_trainer.hpp).
#include "medicosam/train/semantic_trainer.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include <unistd.h>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"
#include "medicosam/model/loader.hpp"
#include "medicosam/model/save.hpp"
#include "medicosam/train/batches.hpp"
#include "medicosam/train/curves.hpp"
#include "medicosam/train/distributed.hpp"
#include "medicosam/train/interactive_step.hpp"
#include "medicosam/train/run_state.hpp"
#include "medicosam/train/semantic_modules.hpp"

namespace medicosam::train {
namespace fs = std::filesystem;
using torch::Tensor;
using Clock = std::chrono::steady_clock;
using V = checkpoint::PyValue;

namespace {

// Class maps of the batch's images as (B, S, S) int64 labels.
Tensor class_targets(const std::vector<ModelInput>& images, const torch::Device& dev) {
  const int S = images.front().size;
  auto t = torch::empty({static_cast<int64_t>(images.size()), S, S}, torch::kInt64);
  auto* p = t.data_ptr<int64_t>();
  for (const auto& im : images) {
    if (im.classes.size() != static_cast<size_t>(S) * S)
      throw InputError("training sample '" + im.name + "' has no class map");
    p = std::copy(im.classes.begin(), im.classes.end(), p);
  }
  return t.to(dev);
}

// The datasets with the class-id check of the model's class count.
DatasetSpec with_classes(DatasetSpec d, int num_classes) {
  d.num_classes = std::max(2, num_classes);
  return d;
}

struct SemanticVal {
  double metric = 1.0;             // 1 - mean over classes of the per-class mean Dice
  std::vector<double> class_dice;  // classes 1..C-1 (one-class head: class 1); NaN when never present
};

// Up to val_images images of val_data, round-robin over the datasets, as model inputs.
std::vector<ModelInput> semantic_validation_set(const TrainConfig& c, int size) {
  std::vector<ModelInput> items;
  if (c.val_data.empty() || c.val_images <= 0) return items;
  std::vector<std::unique_ptr<SampleSource>> sources;
  for (const auto& d : c.val_data) sources.push_back(open_dataset(with_classes(d, c.semantic.num_classes)));
  std::vector<size_t> next(sources.size(), 0);
  while (static_cast<int64_t>(items.size()) < c.val_images) {
    bool any = false;
    for (size_t d = 0; d < sources.size() && static_cast<int64_t>(items.size()) < c.val_images; ++d) {
      if (next[d] >= sources[d]->size()) continue;
      any = true;
      items.push_back(to_model_input(sources[d]->get(next[d]++), size));
    }
    if (!any) break;
  }
  return items;
}

// Dice per class on the image region of the model input grid, averaged over
// the images where the class is in the ground truth or the prediction.
SemanticVal validate_semantic(SemanticModules& m, const std::vector<ModelInput>& items,
                              const torch::Device& dev) {
  SemanticVal r;
  const int C = m.num_classes();
  const int K = std::max(1, C - 1);
  std::vector<double> sum(K, 0.0);
  std::vector<int64_t> count(K, 0);
  if (items.empty()) return r;
  torch::NoGradGuard ng;
  m.set_train(false);
  for (const auto& it : items) {
    const auto labels = logits_to_labels(m.forward(images_tensor({it}, dev))[0])
                            .to(torch::kCPU, torch::kInt32)
                            .contiguous();
    const int32_t* pred = labels.data_ptr<int32_t>();
    for (int k = 0; k < K; ++k) {
      const int c = k + 1;
      int64_t inter = 0, ps = 0, gs = 0;
      for (int y = 0; y < it.height; ++y)
        for (int x = 0; x < it.width; ++x) {
          const size_t i = static_cast<size_t>(y) * it.size + x;
          const bool p = pred[i] == c, g = it.classes[i] == c;
          inter += p && g;
          ps += p;
          gs += g;
        }
      if (ps + gs == 0) continue;
      sum[k] += 2.0 * inter / (ps + gs);
      ++count[k];
    }
  }
  m.set_train(true);
  double total = 0;
  int n = 0;
  for (int k = 0; k < K; ++k) {
    r.class_dice.push_back(count[k] ? sum[k] / count[k] : std::nan(""));
    if (count[k]) total += sum[k] / count[k], ++n;
  }
  r.metric = n ? 1.0 - total / n : 1.0;
  return r;
}

// Copies every tensor of `path`'s UNETR head whose name and shape fit ours.
void init_head_from(model::UnetrImpl& head, const std::string& path, bool main) {
  const auto tensors = model::read_unetr_tensors(path, true);
  if (tensors.empty()) throw CheckpointError("'" + path + "' (decoder_init) has no UNETR head");
  std::map<std::string, Tensor> by_name(tensors.begin(), tensors.end());
  int copied = 0, total = 0;
  torch::NoGradGuard ng;
  for (auto& [name, t] : model::unetr_state_dict(head)) {
    ++total;
    auto it = by_name.find(name);
    if (it == by_name.end() || !it->second.sizes().equals(t.sizes())) continue;
    t.copy_(it->second.to(t.dtype()));
    ++copied;
  }
  if (copied == 0)
    throw CheckpointError("'" + path + "' (decoder_init): no tensor of its head fits this head");
  if (main) std::fprintf(stderr, "decoder_init %s: %d of %d head tensors copied\n", path.c_str(), copied, total);
}

std::vector<std::pair<std::string, V>> model_entries(SemanticModules& m) {
  if (m.unet) {
    return {{"unet_state", tensors_value(model::unet_state_dict(*m.unet))},
            {"unet_config", V(m.unet->config.to_json().dump())}};
  }
  return {{"model_state", tensors_value(model::sam_state_dict(*m.sam), "sam.")},
          {"decoder_state", tensors_value(model::unetr_state_dict(*m.head))}};
}

std::string architecture_of(SemanticModules& m) {
  return m.unet ? "unet2d" : m.sam->config.architecture_name();
}

void load_modules(SemanticModules& m, const V& root, const std::string& path) {
  const auto* d = root.get_if<V::Dict>();
  auto tensors_of = [&](const char* key) {
    const auto* v = d->find(key);
    if (!v) throw FormatError("'" + path + "' has no " + std::string(key) + " (not a checkpoint of this objective)");
    std::vector<std::pair<std::string, Tensor>> out;
    for (auto& nt : checkpoint::value_to_state_dict(*v, "'" + path + "' " + key))
      out.emplace_back(nt.name.rfind("sam.", 0) == 0 ? nt.name.substr(4) : nt.name, nt.tensor);
    return out;
  };
  if (m.unet) {
    model::copy_state_strict(model::unet_state_dict(*m.unet), tensors_of("unet_state"),
                             "'" + path + "' unet_state does not fit the configured U-Net");
    return;
  }
  model::load_state_dict(*m.sam, tensors_of("model_state"), path);
  model::copy_state_strict(model::unetr_state_dict(*m.head), tensors_of("decoder_state"),
                           "'" + path + "' decoder_state does not fit the configured UNETR head");
}

void export_safetensors(const std::string& path, SemanticModules& m, const RunState& st) {
  const std::map<std::string, std::string> meta = {
      {"medicosam.iteration", std::to_string(st.iteration)},
      {"medicosam.best_metric", std::to_string(st.best_metric)}};
  if (m.unet) {
    model::save_unet(path, *m.unet, meta);
    return;
  }
  model::SaveOptions opt;
  opt.format = model::WeightsFormat::kSafetensors;
  opt.metadata = meta;
  opt.metadata["medicosam.semantic_classes"] = std::to_string(m.head->config.num_classes);
  opt.decoder_state = model::unetr_state_dict(*m.head);
  model::save_sam(path, *m.sam, opt);
}

std::string fmt(double v) {
  if (std::isnan(v)) return "nan";
  char b[32];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

}  // namespace

TrainSummary run_semantic_training(const TrainConfig& cfg) {
  const auto t_start = Clock::now();
  const auto& so = cfg.semantic;
  const bool joint = cfg.objective == "joint";
  const int world = cfg.world_size;
  const torch::Device dev = training_device(cfg);
  DataParallel dp(cfg.rank, world, cfg.master_addr, cfg.master_port, dev);
  const bool main = dp.is_main();

  // Model: U-Net, or SAM (checkpoint or fresh architecture) + a fresh UNETR head.
  torch::manual_seed(cfg.seed);
  SemanticModules m;
  if (so.model == "unet") {
    model::UnetConfig uc;
    uc.num_classes = so.num_classes;
    uc.features = so.features;
    uc.depth = so.depth;
    uc.input_size = so.input_size;
    m.unet = model::Unet2d(uc);
  } else {
    m.sam = cfg.init.empty() ? model::Sam(architecture_config(cfg.architecture))
                             : model::load_sam(cfg.init, torch::kCPU).sam;
    model::UnetrConfig hc;
    hc.embed_dim = m.sam->config.encoder.out_chans;
    hc.initial_features = so.features;
    hc.num_classes = so.num_classes;
    hc.conv_transpose = so.conv_transpose;
    m.head = model::Unetr(hc);
    if (!so.decoder_init.empty()) init_head_from(*m.head, so.decoder_init, main);
  }
  m.to(dev);
  m.set_train(true);

  AdamW opt = AdamW::from_config(cfg);
  if (m.unet) {
    for (const auto& p : m.unet->named_parameters(true)) opt.params.emplace_back("unet." + p.key(), p.value());
  } else {
    for (const auto& p : m.sam->named_parameters(true)) {
      const std::string& k = p.key();
      const bool encoder = k.rfind("image_encoder.", 0) == 0;
      const bool frozen = (encoder && cfg.freeze_image_encoder) ||
                          (!encoder && (!joint || (cfg.freeze_prompt_encoder &&
                                                   k.rfind("prompt_encoder.", 0) == 0)));
      p.value().set_requires_grad(!frozen);
      if (!frozen) opt.params.emplace_back("sam." + k, p.value());
    }
    for (const auto& p : m.head->named_parameters(true))
      opt.params.emplace_back("decoder_state." + p.key(), p.value());
  }
  const std::vector<Tensor> trainable = opt.tensors();

  fs::create_directories(cfg.out_dir);
  const std::string latest = (fs::path(cfg.out_dir) / "latest.pt").string();
  const std::string best = (fs::path(cfg.out_dir) / "best.pt").string();
  const std::string train_log = (fs::path(cfg.out_dir) / "train_log.csv").string();
  const std::string val_log = (fs::path(cfg.out_dir) / "validation.csv").string();

  RunState st;
  if (cfg.resume && fs::exists(latest)) {
    V root;
    st = read_run_checkpoint(latest, opt, root, m.unet ? "unet_state" : "model_state");
    load_modules(m, root, latest);
    if (main)
      std::fprintf(stderr, "resuming %s at step %lld\n", latest.c_str(), static_cast<long long>(st.iteration));
  }
  dp.broadcast_parameters(trainable);

  const int C = m.num_classes();
  const int K = std::max(1, C - 1);
  if (main) {
    std::fprintf(stderr, "%s training: %s\n", cfg.objective.c_str(), m.describe().c_str());
    write_file_atomic((fs::path(cfg.out_dir) / "config.json").string(), cfg.to_json().dump(2) + "\n");
    if (st.iteration == 0 || !fs::exists(train_log)) {
      write_file_atomic(train_log,
                        "iteration,epoch,lr,loss,semantic_loss,dice_loss,ce_loss,interactive_loss,"
                        "step_seconds,data_wait_seconds\n");
      std::string h = "iteration,epoch,metric,semantic_metric,dice_mean";
      for (int k = 1; k <= K; ++k) h += ",dice_class" + std::to_string(k);
      if (joint) h += ",interactive_metric,dice_point,dice_box,dice_points,dice_box_points";
      write_file_atomic(val_log, h + "\n");
    } else {
      truncate_log(train_log, st.iteration);
      truncate_log(val_log, st.iteration);
    }
  }

  // Data: the same loader as interactive training; the class maps come along.
  std::vector<std::shared_ptr<SampleSource>> sources;
  std::vector<double> weights;
  for (const auto& d : cfg.train_data) {
    sources.push_back(open_dataset(with_classes(d, so.num_classes)));
    weights.push_back(d.weight);
    if (main)
      std::fprintf(stderr, "train data %s: %zu items (classes: %s)\n", sources.back()->name().c_str(),
                   sources.back()->size(), d.classes.c_str());
  }
  const int S = m.input_size();
  BatchOptions bo;
  bo.input_size = S;
  bo.images = cfg.batch_size / world;
  bo.first_slot = cfg.rank * bo.images;
  bo.objects_per_image = cfg.objects_per_image;
  bo.box_distortion = cfg.box_distortion;
  bo.seed = cfg.seed;
  bo.augment = cfg.augment;
  const auto val_items = main ? semantic_validation_set(cfg, S) : std::vector<ModelInput>{};
  const auto joint_val = main && joint ? make_validation_set(cfg, S) : std::vector<ValItem>{};
  // This process's share of the global mean (gradients are summed over processes).
  const double share = static_cast<double>(bo.images) / cfg.batch_size;

  TrainSummary summary;
  const int64_t first = st.iteration;
  const int64_t last = cfg.stop_after > 0 ? std::min(cfg.iterations, first + cfg.stop_after) : cfg.iterations;
  {
    BatchPrefetcher loader(sources, weights, bo, first, cfg.prefetch);
    Progress progress(cfg.iterations, cfg.objective + " training", main, first);
    std::ofstream log(train_log, std::ios::app);
    double smoothed = -1;
    auto step = [&](const Tensor& loss, double lr) {
      for (auto& p : trainable) p.mutable_grad() = Tensor();
      loss.backward();
      dp.all_reduce_gradients(trainable);
      if (cfg.grad_clip > 0) torch::nn::utils::clip_grad_norm_(trainable, cfg.grad_clip);
      opt.update(lr);
    };
    for (int64_t it = first; it < last; ++it) {
      const auto t0 = Clock::now();
      const double wait0 = loader.wait_seconds();
      Batch batch = loader.next();
      const double lr = learning_rate(cfg, it);
      double interactive = 0;
      if (joint) {  // micro_sam JointSamTrainer: the interactive step first
        StepStats is;
        step(step_loss(*m.sam, batch, cfg, cfg.batch_size, bo.first_slot, dev, is), lr);
        interactive = is.loss;
      }
      auto logits = m.forward(images_tensor(batch.images, dev));
      const auto labels = class_targets(batch.images, dev);
      const auto dice = model::semantic_loss(logits, labels, 1.0, 0.0);
      const auto ce = model::semantic_loss(logits, labels, 0.0, 1.0);
      const auto loss = (so.dice_weight * dice + so.ce_weight * ce) * share;
      step(loss, lr);
      auto stats = torch::tensor({loss.item<double>(), dice.item<double>() * share, ce.item<double>() * share,
                                  interactive},
                                 torch::kFloat64);
      dp.all_reduce_sum(stats);
      const double sem = stats[0].item<double>(), total = sem + stats[3].item<double>();
      st.iteration = it + 1;
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      st.train_time += secs;
      if (main) {
        log << st.iteration << "," << it / cfg.epoch_length << "," << lr << "," << total << "," << sem << ","
            << stats[1].item<double>() << "," << stats[2].item<double>() << "," << stats[3].item<double>()
            << "," << secs << "," << (loader.wait_seconds() - wait0) << "\n";
        log.flush();
        smoothed = smoothed < 0 ? total : 0.95 * smoothed + 0.05 * total;
        char note[96];
        std::snprintf(note, sizeof note, "loss %.4f lr %.2e", smoothed, lr);
        progress.set(st.iteration, note);
      }
      const bool epoch_end = st.iteration % cfg.epoch_length == 0 || st.iteration == cfg.iterations;
      if (epoch_end) {
        if (main) {
          const auto vr = validate_semantic(m, val_items, dev);
          ValResult ir;
          if (joint) ir = validate(*m.sam, joint_val, cfg, dev);
          const bool have_val = !val_items.empty();
          const double metric = joint ? ir.metric + vr.metric / 3 : vr.metric;
          st.current_metric = metric;
          const bool improved = have_val ? metric < st.best_metric : true;
          if (improved) {
            st.best_metric = metric;
            st.best_iteration = st.iteration;
          }
          std::ofstream vl(val_log, std::ios::app);
          vl << st.iteration << "," << (st.iteration - 1) / cfg.epoch_length << "," << metric << "," << vr.metric
             << "," << (1 - vr.metric);
          for (int k = 0; k < K; ++k) vl << "," << fmt(k < static_cast<int>(vr.class_dice.size()) ? vr.class_dice[k] : std::nan(""));
          if (joint)
            vl << "," << ir.metric << "," << ir.dice[0] << "," << ir.dice[1] << "," << ir.dice[2] << "," << ir.dice[3];
          vl << "\n";
          write_run_checkpoint(latest, model_entries(m), opt, st, cfg, architecture_of(m));
          if (improved) {
            write_run_checkpoint(best, model_entries(m), opt, st, cfg, architecture_of(m));
            export_safetensors((fs::path(cfg.out_dir) / "best.safetensors").string(), m, st);
          }
          if (have_val) {
            std::string per_class;
            for (int k = 0; k < K; ++k) per_class += (k ? " " : "") + fmt(vr.class_dice[k]);
            std::fprintf(stderr, "%svalidation at step %lld: metric %.4f (semantic Dice per class: %s%s)%s\n",
                         isatty(2) ? "\n" : "", static_cast<long long>(st.iteration), metric, per_class.c_str(),
                         joint ? ("; interactive metric " + fmt(ir.metric)).c_str() : "",
                         improved ? " *best" : "");
          }
        }
        dp.barrier();
      }
    }
    summary.data_wait_seconds = loader.wait_seconds();
    if (main && last < cfg.iterations) {
      write_run_checkpoint(latest, model_entries(m), opt, st, cfg, architecture_of(m));
      summary.stopped_early = true;
    }
    if (main) progress.finish();
  }
  if (main) {
    export_safetensors((fs::path(cfg.out_dir) / "latest.safetensors").string(), m, st);
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
