// `medicosam eval` end to end: exit codes, messages and report files.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/io/write.hpp"
#include "test_util.hpp"

using namespace medicosam;
using namespace medicosam::eval::testing;
namespace fs = std::filesystem;

namespace {

const fs::path kShared(MEDICOSAM_SHARED_DIR);

}  // namespace

TEST(CliEval, GrabCutBaselineWritesAReport) {
  if (!have_cli()) GTEST_SKIP() << "MEDICOSAM_CLI not set (run through ctest)";
  TempDir tmp("cli_eval");
  write_binary_dataset(tmp.path / "discs", 3);
  const auto out = tmp.path / "report";
  const CliRun r = run_cli("eval --baseline grabcut --data " + (tmp.path / "discs").string() +
                           " --iterations 2 -q --out " + out.string());
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("grabcut"), std::string::npos) << r.output;
  for (const char* f : {"summary.md", "summary.json", "summary.csv", "per_image.csv",
                        "per_image.json", "plots/discs_dice.png"}) {
    EXPECT_TRUE(fs::exists(out / f)) << f;
  }
  const auto j = nlohmann::json::parse(read_file((out / "summary.json").string()));
  EXPECT_EQ(j["results"][0]["method"], "grabcut");
  EXPECT_EQ(j["results"][0]["images"], 3);
  EXPECT_GT(j["results"][0]["i_b"].get<double>(), 0.8);
  EXPECT_NE(j["command"].get<std::string>().find("--baseline grabcut"), std::string::npos);
}

TEST(CliEval, BoxFillBaselineNextToGrabCut) {
  if (!have_cli()) GTEST_SKIP() << "MEDICOSAM_CLI not set (run through ctest)";
  TempDir tmp("cli_eval_boxfill");
  write_binary_dataset(tmp.path / "discs", 3);
  const auto out = tmp.path / "report";
  const std::string data = " --data " + (tmp.path / "discs").string();
  const CliRun r = run_cli("eval --baseline grabcut --baseline boxfill" + data +
                           " --iterations 3 -q --out " + out.string());
  ASSERT_EQ(r.rc, 0) << r.output;
  const auto j = nlohmann::json::parse(read_file((out / "summary.json").string()));
  ASSERT_EQ(j["results"].size(), 2u);
  const auto& gc = j["results"][0];
  const auto& bf = j["results"][1];
  EXPECT_EQ(bf["method"], "boxfill");
  // The filled box has no point start and its corrections change nothing.
  EXPECT_TRUE(bf["point"].is_null());
  EXPECT_TRUE(gc["starts"].contains("point"));
  EXPECT_FALSE(bf["starts"].contains("point"));
  EXPECT_DOUBLE_EQ(bf["box"].get<double>(), bf["i_b"].get<double>());
  EXPECT_DOUBLE_EQ(bf["starts"]["box"]["worse_rounds"].get<double>(), 0.0);
  // Discs fill pi/4 of their box: Dice about 2 (pi/4) / (1 + pi/4) = 0.88.
  EXPECT_GT(bf["box"].get<double>(), 0.8);
  EXPECT_LT(bf["box"].get<double>(), 0.95);
  const std::string md = read_file((out / "summary.md").string());
  EXPECT_NE(md.find("Corrections that made it worse"), std::string::npos);
  EXPECT_NE(md.find("boxfill: the filled prompt box"), std::string::npos);

  // Point start only, or a 3D protocol: refused with the reason.
  CliRun e = run_cli("eval --baseline boxfill --starts point" + data + " -q --out " +
                     (tmp.path / "e1").string());
  EXPECT_NE(e.rc, 0);
  EXPECT_NE(e.output.find("needs the box start"), std::string::npos) << e.output;
  e = run_cli("eval --baseline boxfill --protocol interactive3d" + data + " -q --out " +
              (tmp.path / "e2").string());
  EXPECT_NE(e.rc, 0);
  EXPECT_NE(e.output.find("2D baseline"), std::string::npos) << e.output;
}

TEST(CliEval, FixtureModelOnRealData) {
  if (!have_cli()) GTEST_SKIP() << "MEDICOSAM_CLI not set (run through ctest)";
  const auto model = kShared / "fixtures/sam_parity/sam_tiny_seed0.pth";
  const auto data = kShared / "data/hc18_fetal_head";
  if (!fs::exists(model) || !fs::exists(data)) GTEST_SKIP() << "no fixture model or data";
  TempDir tmp("cli_eval_model");
  const CliRun r =
      run_cli("eval --model " + model.string() + " --data " + data.string() +
              " --limit 1 --iterations 2 --starts box --overlays 0 --threads 1 -q --out " +
              tmp.path.string());
  ASSERT_EQ(r.rc, 0) << r.output;
  const auto j = nlohmann::json::parse(read_file((tmp.path / "summary.json").string()));
  EXPECT_EQ(j["results"][0]["method"], "sam_tiny_seed0");
  EXPECT_EQ(j["results"][0]["dataset"], "hc18_fetal_head");
  EXPECT_TRUE(j["results"][0]["point"].is_null());  // not run
  const double box = j["results"][0]["box"].get<double>();
  EXPECT_GE(box, 0.0);
  EXPECT_LE(box, 1.0);
}

TEST(CliEval, ClearErrors) {
  if (!have_cli()) GTEST_SKIP() << "MEDICOSAM_CLI not set (run through ctest)";
  TempDir tmp("cli_eval_err");
  write_binary_dataset(tmp.path / "discs", 1);
  const std::string data =
      " --data " + (tmp.path / "discs").string() + " --out " + (tmp.path / "r").string();
  CliRun r = run_cli("eval --protocol semantic --baseline grabcut" + data);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.output.find("the semantic baseline is a U-Net"), std::string::npos) << r.output;
  r = run_cli("eval --protocol semantic" + data);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.output.find("needs --model"), std::string::npos) << r.output;
  r = run_cli("eval --baseline grabcut --data /nonexistent/ds --out " + (tmp.path / "r").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.output.find("/nonexistent/ds"), std::string::npos) << r.output;
  r = run_cli("eval --model /nonexistent/model.pth" + data);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.output.find("/nonexistent/model.pth"), std::string::npos) << r.output;
  r = run_cli("eval --baseline grabcut --split holdout" + data);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.output.find("holdout"), std::string::npos) << r.output;
  r = run_cli("eval --baseline lasso" + data);
  EXPECT_NE(r.rc, 0);
}

TEST(CliEval, Interactive3DWithGrabCut) {
  if (!have_cli()) GTEST_SKIP() << "MEDICOSAM_CLI not set (run through ctest)";
  TempDir tmp("cli_eval_3d");
  const Phantom p = phantom();
  fs::create_directories(tmp.path / "vols");
  io::write_image((tmp.path / "vols" / "ph_image.nrrd").string(), p.volume);
  io::write_label_map((tmp.path / "vols" / "ph_label.nrrd").string(), p.labels);
  const auto out = tmp.path / "report3d";
  const CliRun r =
      run_cli("eval --baseline grabcut --protocol interactive3d --grid-search small -q --data " +
              (tmp.path / "vols").string() + " --out " + out.string());
  ASSERT_EQ(r.rc, 0) << r.output;
  for (const char* f : {"summary.md", "summary.json", "per_volume.csv"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const auto j = nlohmann::json::parse(read_file((out / "summary.json").string()));
  EXPECT_EQ(j["protocol"], "interactive3d");
  const auto& box = j["results"][0]["starts"]["box"];
  EXPECT_EQ(box["n_volumes"], 1);
  EXPECT_GT(box["dice"].get<double>(), 0.5);
  EXPECT_GE(box["grid_search_oracle_dice"].get<double>(), box["dice"].get<double>() - 1e-12);
  EXPECT_EQ(j["results"][0]["volumes"][0]["skipped"], 1);  // the speck
  const std::string md = read_file((out / "summary.md").string());
  EXPECT_NE(md.find("grid-search oracle"), std::string::npos);
}
