#include <gtest/gtest.h>

#include <filesystem>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"

namespace fs = std::filesystem;
using namespace medicosam;

namespace {
fs::path fresh_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("medicosam_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST(AtomicFile, UncommittedWriteLeavesNothingBehind) {
  const auto dir = fresh_dir("atomic1");
  {
    AtomicFile f((dir / "out.bin").string());
    f.write("partial");
  }
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(AtomicFile, FailedWriterKeepsThePreviousFile) {
  const auto dir = fresh_dir("atomic2");
  const auto path = (dir / "labels.nii.gz").string();
  write_file_atomic(path, "old content");
  EXPECT_THROW(write_via_temp_file(path,
                                   [](const std::string& tmp) {
                                     write_file_atomic(tmp, "half");
                                     throw IoError("disk full");
                                   }),
               IoError);
  EXPECT_EQ(read_file(path), "old content");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1);
}

TEST(AtomicFile, TempNameKeepsTheExtension) {
  const auto tmp = make_temp_path("/x/y/seg.nii.gz");
  EXPECT_EQ(tmp.substr(tmp.size() - 7), ".nii.gz");
  EXPECT_EQ(fs::path(tmp).parent_path(), fs::path("/x/y"));
}

TEST(AtomicFile, UnwritableFolderIsAClearError) {
  EXPECT_THROW(AtomicFile("/nonexistent-folder/out.png"), IoError);
}
