// DataParallel (c10d) with two ranks in one process (two threads, Gloo over a
// local TCP store): collectives take tensors from anywhere (any device,
// non-contiguous views, float64 scalars like the trainer's loss) by staging
// them through the group's device, which is what NCCL needs on CUDA.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/torch.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "medicosam/train/distributed.hpp"

namespace medicosam::train {
namespace {

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

// Runs `body(dp)` on ranks 0 and 1 concurrently; failures are reported per rank.
void two_ranks(const std::function<void(DataParallel&)>& body) {
  const int port = free_port();
  std::string errors[2];
  auto rank = [&](int r) {
    try {
      DataParallel dp(r, 2, "127.0.0.1", port, torch::Device(torch::kCPU));
      body(dp);
    } catch (const std::exception& e) {
      errors[r] = e.what();
    }
  };
  std::thread t1(rank, 1);
  rank(0);
  t1.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

TEST(DataParallel, CollectivesTakeNonContiguousAndFloat64Tensors) {
  torch::Tensor results[2][3];
  two_ranks([&](DataParallel& dp) {
    const int r = dp.rank();
    EXPECT_EQ(dp.device(), torch::Device(torch::kCPU));
    // A transposed (non-contiguous) view, summed in place.
    auto base = torch::arange(6, torch::kFloat32).reshape({2, 3});
    auto view = (base * (r + 1)).t();
    ASSERT_FALSE(view.is_contiguous());
    dp.all_reduce_sum(view);
    // The trainer's loss line: a float64 CPU tensor.
    auto loss = torch::tensor({0.5 * (r + 1), 1.0, -2.0}, torch::kFloat64);
    dp.all_reduce_sum(loss);
    // Broadcast of rank 0's strided column.
    auto m = torch::full({3, 4}, static_cast<float>(r + 10));
    auto col = m.select(1, 2);
    dp.broadcast(col);
    dp.barrier();
    results[r][0] = view.clone();
    results[r][1] = loss.clone();
    results[r][2] = m.clone();
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(results[r][0].defined()) << "rank " << r;
    EXPECT_TRUE(torch::equal(results[r][0],
                             (torch::arange(6, torch::kFloat32).reshape({2, 3}) * 3).t()))
        << "rank " << r << ": " << results[r][0];
    EXPECT_TRUE(torch::allclose(results[r][1], torch::tensor({1.5, 2.0, -4.0}, torch::kFloat64)))
        << results[r][1];
    // Only column 2 came from rank 0; the rest of rank 1's matrix is its own.
    EXPECT_TRUE(torch::equal(results[r][2].select(1, 2), torch::full({3}, 10.0f)));
    EXPECT_EQ(results[r][2][0][0].item<float>(), static_cast<float>(r + 10));
  }
}

TEST(DataParallel, OneProcessNeedsNoGroup) {
  DataParallel dp(0, 1, "127.0.0.1", 1, torch::Device(torch::kCPU));
  auto t = torch::ones({2});
  dp.all_reduce_sum(t);
  dp.barrier();
  EXPECT_TRUE(torch::equal(t, torch::ones({2})));
  EXPECT_EQ(dp.device(), torch::Device(torch::kCPU));
}

}  // namespace
}  // namespace medicosam::train
