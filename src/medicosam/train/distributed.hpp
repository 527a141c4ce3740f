#pragma once
// Data-parallel training across processes with torch's own c10d: Gloo on CPU,
// NCCL with CUDA; rendezvous through a TCP store at master_addr:master_port
// (rank 0 hosts it). A world of size 1 does no communication at all.
#include <torch/torch.h>

#include <memory>
#include <string>

namespace medicosam::train {

class DataParallel {
 public:
  DataParallel(int rank, int world_size, const std::string& master_addr, int master_port,
               const torch::Device& device);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool is_main() const { return rank_ == 0; }

  // The device the collectives run on: the CUDA device for NCCL, else the CPU.
  torch::Device device() const;

  // Sums `t` over all processes, in place. `t` may live on any device and
  // need not be contiguous: it is staged through the group's device (so a
  // CPU loss scalar works with NCCL).
  void all_reduce_sum(torch::Tensor& t);
  // Copies rank 0's `t` to every process, in place (staged like all_reduce_sum).
  void broadcast(torch::Tensor& t);
  // Waits for every process (a one-element all-reduce on the group's device).
  void barrier();

  // Gradients of `params` summed over all processes (one flattened transfer).
  void all_reduce_gradients(const std::vector<torch::Tensor>& params);
  // Parameters made identical to rank 0's.
  void broadcast_parameters(const std::vector<torch::Tensor>& params);

  struct Impl;

 private:
  template <typename F>
  void on_group_device(torch::Tensor& t, F&& collective);

  int rank_, world_size_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace medicosam::train
