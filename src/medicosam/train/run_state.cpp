#include "medicosam/train/run_state.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <thread>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"

namespace medicosam::train {
using torch::Tensor;
using V = checkpoint::PyValue;

AdamW AdamW::from_config(const TrainConfig& c) {
  AdamW o;
  o.beta1 = c.beta1;
  o.beta2 = c.beta2;
  o.eps = c.eps;
  o.weight_decay = c.weight_decay;
  return o;
}

void AdamW::update(double lr) {
  torch::NoGradGuard ng;
  ++step;
  const double bc1 = 1 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1 - std::pow(beta2, static_cast<double>(step));
  for (auto& [name, p] : params) {
    if (!p.grad().defined()) continue;
    auto& s = state[name];
    if (!s.exp_avg.defined()) {
      s.exp_avg = torch::zeros_like(p);
      s.exp_avg_sq = torch::zeros_like(p);
    }
    const auto& g = p.grad();
    p.mul_(1 - lr * weight_decay);
    s.exp_avg.mul_(beta1).add_(g, 1 - beta1);
    s.exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2);
    auto denom = (s.exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(eps);
    p.addcdiv_(s.exp_avg, denom, -lr / bc1);
  }
}

std::vector<Tensor> AdamW::tensors() const {
  std::vector<Tensor> t;
  for (const auto& [n, p] : params) t.push_back(p);
  return t;
}

torch::Device training_device(const TrainConfig& cfg) {
  const int world = cfg.world_size;
  if (cfg.batch_size % world != 0) {
    throw InputError("batch_size " + std::to_string(cfg.batch_size) +
                     " must be divisible by the number of processes " + std::to_string(world));
  }
  const int threads =
      cfg.threads > 0 ? cfg.threads
                      : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world);
  at::set_num_threads(threads);
  torch::Device dev(cfg.device == "cuda" ? torch::kCUDA : torch::kCPU);
  if (dev.is_cuda()) {
    if (!torch::cuda::is_available())
      throw InputError("device cuda requested but no CUDA device is available");
    dev = torch::Device(torch::kCUDA,
                        cfg.rank % std::max<int>(1, static_cast<int>(torch::cuda::device_count())));
  }
  return dev;
}

double learning_rate(const TrainConfig& c, int64_t it) {
  if (c.warmup > 0 && it < c.warmup) return c.lr * static_cast<double>(it + 1) / c.warmup;
  if (c.schedule == "constant") return c.lr;
  if (c.schedule == "step")
    return c.lr * std::pow(c.gamma, static_cast<double>((it) / std::max<int64_t>(1, c.step_size)));
  const double span = std::max<int64_t>(1, c.iterations - c.warmup);
  const double t = std::clamp(static_cast<double>(it - c.warmup) / span, 0.0, 1.0);
  const double lo = c.lr * c.min_lr_ratio;
  return lo + 0.5 * (c.lr - lo) * (1 + std::cos(M_PI * t));
}

V tensors_value(const std::vector<std::pair<std::string, Tensor>>& named, const std::string& prefix) {
  auto d = V::ordered_dict();
  auto* dict = d.get_if<V::Dict>();
  for (const auto& [name, t] : named)
    dict->append(V(prefix + name), V(t.detach().to(torch::kCPU).contiguous()));
  return d;
}

V optimizer_state_value(const AdamW& opt) {
  auto os = V::dict();
  auto* od = os.get_if<V::Dict>();
  od->set("step", V(opt.step));
  auto m = V::ordered_dict(), v = V::ordered_dict();
  for (const auto& [name, s] : opt.state) {
    if (!s.exp_avg.defined()) continue;
    m.get_if<V::Dict>()->append(V(name), V(s.exp_avg.to(torch::kCPU).contiguous()));
    v.get_if<V::Dict>()->append(V(name), V(s.exp_avg_sq.to(torch::kCPU).contiguous()));
  }
  od->set("exp_avg", std::move(m));
  od->set("exp_avg_sq", std::move(v));
  return os;
}

void restore_optimizer(AdamW& opt, const V& value, const std::string& path) {
  const auto* os = value.get_if<V::Dict>();
  if (!os || !os->find("step") || !os->find("exp_avg") || !os->find("exp_avg_sq"))
    throw FormatError("'" + path + "': optimizer_state lacks step / exp_avg / exp_avg_sq");
  opt.step = static_cast<int64_t>(os->find("step")->number());
  const auto m = checkpoint::value_to_state_dict(*os->find("exp_avg"), "'" + path + "' exp_avg");
  const auto v =
      checkpoint::value_to_state_dict(*os->find("exp_avg_sq"), "'" + path + "' exp_avg_sq");
  if (m.size() != v.size())
    throw FormatError("'" + path + "': optimizer_state exp_avg and exp_avg_sq differ in length");
  std::map<std::string, Tensor> params;
  for (auto& [name, p] : opt.params) params[name] = p;
  for (size_t i = 0; i < m.size(); ++i) {
    const auto dev =
        params.count(m[i].name) ? params[m[i].name].device() : torch::Device(torch::kCPU);
    opt.state[m[i].name] = {m[i].tensor.to(dev).clone(), v.at(i).tensor.to(dev).clone()};
  }
}

void write_run_checkpoint(const std::string& path, std::vector<std::pair<std::string, V>> models,
                          const AdamW& opt, const RunState& st, const TrainConfig& c,
                          const std::string& architecture) {
  auto root = V::dict();
  auto* d = root.get_if<V::Dict>();
  for (auto& [key, value] : models) d->set(key, std::move(value));
  d->set("optimizer_state", optimizer_state_value(opt));
  d->set("iteration", V(st.iteration));
  d->set("epoch", V(st.iteration / c.epoch_length));
  d->set("best_metric", V(st.best_metric));
  d->set("best_iteration", V(st.best_iteration));
  d->set("current_metric", V(st.current_metric));
  d->set("train_time", V(st.train_time));
  d->set("config", V(c.to_json().dump()));
  d->set("architecture", V(architecture));
  checkpoint::write_pytorch_checkpoint(path, root);
}

RunState read_run_checkpoint(const std::string& path, AdamW& opt, V& root,
                             const std::string& model_key) {
  root = checkpoint::read_pytorch_checkpoint(path);
  const auto* d = root.get_if<V::Dict>();
  if (!d || !d->find(model_key) || !d->find("optimizer_state")) {
    throw FormatError("'" + path + "' is not a medicosam training checkpoint (no " + model_key +
                      " / optimizer_state)");
  }
  restore_optimizer(opt, *d->find("optimizer_state"), path);
  auto num = [&](const char* key) {
    const auto* v = d->find(key);
    if (!v) throw FormatError("'" + path + "' is not a medicosam training checkpoint (no " +
                              std::string(key) + ")");
    return v->number();
  };
  RunState st;
  st.iteration = static_cast<int64_t>(num("iteration"));
  st.best_metric = num("best_metric");
  st.best_iteration = static_cast<int64_t>(num("best_iteration"));
  st.current_metric = num("current_metric");
  st.train_time = num("train_time");
  return st;
}

void truncate_log(const std::string& path, int64_t last) {
  std::ifstream in(path);
  if (!in) return;
  std::string header, line, kept;
  std::getline(in, header);
  kept = header + "\n";
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (std::stoll(line.substr(0, line.find(','))) <= last) kept += line + "\n";
  }
  in.close();
  write_file_atomic(path, kept);
}

}  // namespace medicosam::train
