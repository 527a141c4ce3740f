#include "medicosam/train/distributed.hpp"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>

#include "medicosam/core/error.hpp"

namespace medicosam::train {

struct DataParallel::Impl {
  // Where the collectives' tensors must live: CUDA for NCCL, CPU for Gloo.
  torch::Device device = torch::kCPU;
  c10::intrusive_ptr<c10d::Store> store;
  // ProcessGroupGloo / ProcessGroupNCCL share these collective signatures in
  // torch 1.13 and 2.x.
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#ifdef USE_C10D_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif

  template <typename F>
  void run(F&& f) {
#ifdef USE_C10D_NCCL
    if (nccl) {
      f(*nccl)->wait();
      return;
    }
#endif
    f(*gloo)->wait();
  }
};

DataParallel::DataParallel(int rank, int world_size, const std::string& master_addr,
                           int master_port, const torch::Device& device)
    : rank_(rank), world_size_(world_size) {
  if (world_size_ <= 1) return;
  impl_ = std::make_unique<Impl>();
  impl_->device = device.is_cuda() ? device : torch::Device(torch::kCPU);
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<uint16_t>(master_port);
  opts.isServer = rank == 0;
  opts.numWorkers = world_size;
  opts.waitWorkers = true;
  opts.timeout = std::chrono::milliseconds(300000);
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(master_addr, opts);
    if (device.is_cuda()) {
#ifdef USE_C10D_NCCL
      impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, rank, world_size);
      return;
#else
      throw InputError("distributed training on CUDA needs a libtorch built with NCCL");
#endif
    }
    auto gopts = c10d::ProcessGroupGloo::Options::create();
    gopts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(master_addr));
    gopts->timeout = std::chrono::milliseconds(300000);
    impl_->gloo =
        c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, rank, world_size, gopts);
  } catch (const c10::Error& e) {
    std::string what = e.what();
    throw InputError("cannot join the training group at " + master_addr + ":" +
                     std::to_string(master_port) + " as rank " + std::to_string(rank) + "/" +
                     std::to_string(world_size) + ": " + what.substr(0, what.find('\n')));
  }
}

DataParallel::~DataParallel() = default;

torch::Device DataParallel::device() const {
  return impl_ ? impl_->device : torch::Device(torch::kCPU);
}

// Runs `collective` on `t`, staged through a contiguous copy on the group's
// device when `t` lives elsewhere (NCCL only takes CUDA tensors; Gloo and
// NCCL both need dense contiguous ones) and copied back after.
template <typename F>
void DataParallel::on_group_device(torch::Tensor& t, F&& collective) {
  const bool direct = t.device() == impl_->device && t.is_contiguous();
  torch::Tensor staged = direct ? t : t.to(impl_->device).contiguous();
  std::vector<torch::Tensor> v{staged};
  impl_->run([&](auto& pg) { return collective(pg, v); });
  if (!direct) {
    torch::NoGradGuard ng;
    t.copy_(staged);
  }
}

void DataParallel::all_reduce_sum(torch::Tensor& t) {
  if (world_size_ <= 1) return;
  on_group_device(t, [](auto& pg, std::vector<torch::Tensor>& v) { return pg.allreduce(v); });
}

void DataParallel::broadcast(torch::Tensor& t) {
  if (world_size_ <= 1) return;
  on_group_device(t, [](auto& pg, std::vector<torch::Tensor>& v) { return pg.broadcast(v); });
}

void DataParallel::barrier() {
  if (world_size_ <= 1) return;
  // A one-element all-reduce on the group's device (NCCL has no CPU barrier).
  auto t = torch::zeros({1}, torch::TensorOptions().device(impl_->device));
  all_reduce_sum(t);
}

void DataParallel::all_reduce_gradients(const std::vector<torch::Tensor>& params) {
  if (world_size_ <= 1) return;
  // Only parameters that received a gradient take part: the set is the same on
  // every process (same prompts and mask-input decisions), and a parameter that
  // took no part in the step (e.g. the mask-input path when no mask was fed)
  // must stay without gradient, as in a single process, so the optimizer skips it.
  std::vector<torch::Tensor> with_grad;
  for (const auto& p : params)
    if (p.requires_grad() && p.grad().defined()) with_grad.push_back(p);
  if (with_grad.empty()) return;
  std::vector<torch::Tensor> parts;
  for (const auto& p : with_grad) parts.push_back(p.grad().reshape(-1));
  auto flat = torch::cat(parts);
  all_reduce_sum(flat);
  int64_t off = 0;
  torch::NoGradGuard ng;
  for (const auto& p : with_grad) {
    const int64_t n = p.numel();
    p.mutable_grad().copy_(flat.slice(0, off, off + n).view_as(p));
    off += n;
  }
}

void DataParallel::broadcast_parameters(const std::vector<torch::Tensor>& params) {
  if (world_size_ <= 1) return;
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> parts;
  for (const auto& p : params) parts.push_back(p.detach().reshape(-1));
  auto flat = torch::cat(parts);
  broadcast(flat);
  int64_t off = 0;
  for (const auto& p : params) {
    const int64_t n = p.numel();
    p.detach().copy_(flat.slice(0, off, off + n).view_as(p));
    off += n;
  }
}

}  // namespace medicosam::train
