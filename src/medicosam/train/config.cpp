#include "medicosam/train/config.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "medicosam/core/error.hpp"

namespace medicosam::train {
namespace fs = std::filesystem;

namespace {

// Paths in a config file are relative to the file's folder.
std::string resolve(const std::string& p, const std::string& base) {
  if (p.empty() || base.empty() || fs::path(p).is_absolute()) return p;
  return (fs::path(base) / p).lexically_normal().string();
}

// Paths written by to_json() are absolute, so that the config.json a run
// writes into its out_dir (a different folder) loads back to the same files.
std::string absolute(const std::string& p) {
  if (p.empty()) return p;
  std::error_code ec;
  const fs::path a = fs::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

}  // namespace

const std::vector<std::string>& TrainConfig::known_keys() {
  static const std::vector<std::string> keys = {"objective",
                                                "semantic",
                                                "init",
                                                "architecture",
                                                "train_data",
                                                "val_data",
                                                "augment",
                                                "batch_size",
                                                "objects_per_image",
                                                "sub_iterations",
                                                "mask_prob",
                                                "box_distortion",
                                                "loss_size",
                                                "bce_weight",
                                                "iterations",
                                                "epoch_length",
                                                "val_images",
                                                "lr",
                                                "weight_decay",
                                                "beta1",
                                                "beta2",
                                                "eps",
                                                "grad_clip",
                                                "schedule",
                                                "warmup",
                                                "min_lr_ratio",
                                                "step_size",
                                                "gamma",
                                                "freeze_image_encoder",
                                                "freeze_prompt_encoder",
                                                "seed",
                                                "threads",
                                                "device",
                                                "mixed_precision",
                                                "prefetch",
                                                "out_dir",
                                                "resume",
                                                "stop_after",
                                                "rank",
                                                "world_size",
                                                "master_addr",
                                                "master_port",
                                                "comment"};
  return keys;
}

TrainConfig TrainConfig::from_json(const nlohmann::json& j, const std::string& source) {
  const std::string base = source.empty() ? "" : fs::path(source).parent_path().string();
  TrainConfig c;
  const std::vector<std::string>& known = known_keys();
  if (!j.is_object()) throw InputError("'" + source + "': a training config must be a JSON object");
  for (const auto& [k, v] : j.items()) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      throw InputError("'" + source + "': unknown setting \"" + k + "\"");
    }
  }
  try {
    c.objective = j.value("objective", c.objective);
    if (j.contains("semantic")) {
      c.semantic = SemanticOptions::from_json(j["semantic"], "'" + source + "' semantic");
      c.semantic.decoder_init = resolve(c.semantic.decoder_init, base);
    }
    c.init = resolve(j.value("init", c.init), base);
    c.architecture = j.value("architecture", nlohmann::json::object());
    for (size_t i = 0; j.contains("train_data") && i < j["train_data"].size(); ++i) {
      auto d = DatasetSpec::from_json(j["train_data"][i],
                                      source + " train_data[" + std::to_string(i) + "]");
      d.path = resolve(d.path, base);
      for (auto& [img, lab] : d.pairs) img = resolve(img, base), lab = resolve(lab, base);
      c.train_data.push_back(d);
    }
    for (size_t i = 0; j.contains("val_data") && i < j["val_data"].size(); ++i) {
      auto d =
          DatasetSpec::from_json(j["val_data"][i], source + " val_data[" + std::to_string(i) + "]");
      d.path = resolve(d.path, base);
      for (auto& [img, lab] : d.pairs) img = resolve(img, base), lab = resolve(lab, base);
      c.val_data.push_back(d);
    }
    if (j.contains("augment")) c.augment = AugmentOptions::from_json(j["augment"]);
    c.batch_size = j.value("batch_size", c.batch_size);
    c.objects_per_image = j.value("objects_per_image", c.objects_per_image);
    c.sub_iterations = j.value("sub_iterations", c.sub_iterations);
    c.mask_prob = j.value("mask_prob", c.mask_prob);
    c.box_distortion = j.value("box_distortion", c.box_distortion);
    c.iterations = j.value("iterations", c.iterations);
    c.epoch_length = j.value("epoch_length", c.epoch_length);
    c.val_images = j.value("val_images", c.val_images);
    c.loss_size = j.value("loss_size", c.loss_size);
    c.bce_weight = j.value("bce_weight", c.bce_weight);
    c.lr = j.value("lr", c.lr);
    c.weight_decay = j.value("weight_decay", c.weight_decay);
    c.beta1 = j.value("beta1", c.beta1);
    c.beta2 = j.value("beta2", c.beta2);
    c.eps = j.value("eps", c.eps);
    c.grad_clip = j.value("grad_clip", c.grad_clip);
    c.schedule = j.value("schedule", c.schedule);
    c.warmup = j.value("warmup", c.warmup);
    c.min_lr_ratio = j.value("min_lr_ratio", c.min_lr_ratio);
    c.step_size = j.value("step_size", c.step_size);
    c.gamma = j.value("gamma", c.gamma);
    c.freeze_image_encoder = j.value("freeze_image_encoder", c.freeze_image_encoder);
    c.freeze_prompt_encoder = j.value("freeze_prompt_encoder", c.freeze_prompt_encoder);
    c.seed = j.value("seed", c.seed);
    c.threads = j.value("threads", c.threads);
    c.device = j.value("device", c.device);
    c.mixed_precision = j.value("mixed_precision", c.mixed_precision);
    c.prefetch = j.value("prefetch", c.prefetch);
    c.out_dir = resolve(j.value("out_dir", c.out_dir), base);
    c.resume = j.value("resume", c.resume);
    c.stop_after = j.value("stop_after", c.stop_after);
    c.rank = j.value("rank", c.rank);
    c.world_size = j.value("world_size", c.world_size);
    c.master_addr = j.value("master_addr", c.master_addr);
    c.master_port = j.value("master_port", c.master_port);
  } catch (const nlohmann::json::exception& e) {
    throw InputError("'" + source + "': " + e.what());
  }
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) throw InputError("'" + source + "': " + what);
  };
  check(!c.train_data.empty(), "\"train_data\" must list at least one dataset");
  check(c.batch_size >= 1, "\"batch_size\" must be >= 1");
  check(c.objects_per_image >= 1, "\"objects_per_image\" must be >= 1");
  check(c.sub_iterations >= 1, "\"sub_iterations\" must be >= 1");
  check(c.iterations >= 1, "\"iterations\" must be >= 1");
  check(c.epoch_length >= 1, "\"epoch_length\" must be >= 1");
  check(c.lr > 0, "\"lr\" must be positive");
  check(c.loss_size >= 0, "\"loss_size\" must be >= 0");
  check(c.bce_weight >= 0, "\"bce_weight\" must be >= 0");
  check(c.schedule == "constant" || c.schedule == "cosine" || c.schedule == "step",
        "\"schedule\" must be constant, cosine or step");
  check(c.mask_prob >= 0 && c.mask_prob <= 1, "\"mask_prob\" must be in [0, 1]");
  check(c.objective == "interactive" || c.objective == "semantic" || c.objective == "joint",
        "\"objective\" must be interactive, semantic or joint");
  const bool unet = c.objective == "semantic" && c.semantic.model == "unet";
  check(c.objective != "joint" || c.semantic.model == "unetr",
        "the joint objective trains a UNETR head on the SAM encoder (semantic.model \"unetr\")");
  check(unet || !c.init.empty() || !c.architecture.empty(),
        "give \"init\" (a checkpoint) or \"architecture\"");
  check(c.world_size >= 1 && c.rank >= 0 && c.rank < c.world_size,
        "rank must be in [0, world_size)");
  return c;
}

TrainConfig TrainConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError("cannot open training config '" + path + "'");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in, nullptr, true, /*ignore_comments=*/true);
  } catch (const std::exception& e) {
    throw FormatError("'" + path + "' is not valid JSON: " + e.what());
  }
  return from_json(j, path);
}

SemanticOptions SemanticOptions::from_json(const nlohmann::json& j, const std::string& where) {
  auto fail = [&](const std::string& why) { return InputError(where + ": " + why); };
  if (!j.is_object()) throw fail("must be a JSON object");
  static const std::vector<std::string> known = {"model",      "num_classes",    "features",
                                                 "depth",      "input_size",     "conv_transpose",
                                                 "dice_weight", "ce_weight",     "decoder_init"};
  for (const auto& [k, v] : j.items())
    if (std::find(known.begin(), known.end(), k) == known.end())
      throw fail("unknown setting \"" + k + "\"");
  SemanticOptions o;
  try {
    o.model = j.value("model", o.model);
    o.num_classes = j.value("num_classes", o.num_classes);
    o.features = j.value("features", o.features);
    o.depth = j.value("depth", o.depth);
    o.input_size = j.value("input_size", o.input_size);
    o.conv_transpose = j.value("conv_transpose", o.conv_transpose);
    o.dice_weight = j.value("dice_weight", o.dice_weight);
    o.ce_weight = j.value("ce_weight", o.ce_weight);
    o.decoder_init = j.value("decoder_init", o.decoder_init);
  } catch (const nlohmann::json::exception& e) {
    throw fail(e.what());
  }
  if (o.model != "unetr" && o.model != "unet") throw fail("\"model\" must be unetr or unet");
  if (o.num_classes < 1 || o.num_classes > 255) throw fail("\"num_classes\" must be in 1..255");
  if (o.features < 1) throw fail("\"features\" must be >= 1");
  if (o.depth < 1 || o.depth > 6) throw fail("\"depth\" must be in 1..6");
  if (o.input_size < 16 || o.input_size % (1 << o.depth) != 0)
    throw fail("\"input_size\" must be >= 16 and a multiple of 2^depth");
  if (o.dice_weight < 0 || o.ce_weight < 0 || o.dice_weight + o.ce_weight <= 0)
    throw fail("\"dice_weight\" and \"ce_weight\" must be >= 0, not both 0");
  return o;
}

nlohmann::json SemanticOptions::to_json() const {
  nlohmann::json j{{"model", model},         {"num_classes", num_classes},
                   {"features", features},   {"depth", depth},
                   {"input_size", input_size}, {"conv_transpose", conv_transpose},
                   {"dice_weight", dice_weight}, {"ce_weight", ce_weight}};
  if (!decoder_init.empty()) j["decoder_init"] = absolute(decoder_init);
  return j;
}

nlohmann::json TrainConfig::to_json() const {
  nlohmann::json j;
  j["objective"] = objective;
  if (objective != "interactive") j["semantic"] = semantic.to_json();
  if (!init.empty()) j["init"] = absolute(init);
  if (!architecture.empty()) j["architecture"] = architecture;
  auto dataset = [](DatasetSpec d) {
    d.path = absolute(d.path);
    for (auto& [img, lab] : d.pairs) img = absolute(img), lab = absolute(lab);
    return d.to_json();
  };
  for (const auto& d : train_data) j["train_data"].push_back(dataset(d));
  for (const auto& d : val_data) j["val_data"].push_back(dataset(d));
  j["augment"] = augment.to_json();
  j["batch_size"] = batch_size;
  j["objects_per_image"] = objects_per_image;
  j["sub_iterations"] = sub_iterations;
  j["mask_prob"] = mask_prob;
  j["box_distortion"] = box_distortion;
  j["iterations"] = iterations;
  j["epoch_length"] = epoch_length;
  j["val_images"] = val_images;
  j["loss_size"] = loss_size;
  j["bce_weight"] = bce_weight;
  j["lr"] = lr;
  j["weight_decay"] = weight_decay;
  j["beta1"] = beta1;
  j["beta2"] = beta2;
  j["eps"] = eps;
  j["grad_clip"] = grad_clip;
  j["schedule"] = schedule;
  j["warmup"] = warmup;
  j["min_lr_ratio"] = min_lr_ratio;
  j["step_size"] = step_size;
  j["gamma"] = gamma;
  j["freeze_image_encoder"] = freeze_image_encoder;
  j["freeze_prompt_encoder"] = freeze_prompt_encoder;
  j["seed"] = seed;
  j["threads"] = threads;
  j["device"] = device;
  j["mixed_precision"] = mixed_precision;
  j["prefetch"] = prefetch;
  j["out_dir"] = absolute(out_dir);
  j["resume"] = resume;
  j["world_size"] = world_size;
  j["master_addr"] = master_addr;
  j["master_port"] = master_port;
  // Not written: "rank" (differs per process), "stop_after" (one run's
  // interruption) and "comment".
  return j;
}

}  // namespace medicosam::train
