// The report folder: every file exists, parses, and says what the results say.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/eval/grabcut.hpp"
#include "medicosam/eval/oracle.hpp"
#include "medicosam/eval/report.hpp"
#include "test_util.hpp"

using namespace medicosam;
using namespace medicosam::eval;
using namespace medicosam::eval::testing;
namespace fs = std::filesystem;

namespace {

std::vector<std::vector<std::string>> read_csv(const fs::path& p) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> row;
    std::stringstream ss(line);
    std::string f;
    while (std::getline(ss, f, ',')) row.push_back(f);
    if (!line.empty() && line.back() == ',') row.push_back("");
    rows.push_back(row);
  }
  return rows;
}

}  // namespace

TEST(Report, FilesExistAndAgreeWithTheResults) {
  TempDir data("report_data"), out("report_out");
  write_binary_dataset(data.path / "discs", 4);
  const auto ds = Dataset2D::open((data.path / "discs").string());
  Interactive2DOptions o;
  o.progress = false;
  o.n_iterations = 3;
  OracleOptions oo;
  oo.erosion = 2;
  OracleSegmenter oracle(oo, "oracle");
  GrabCutSegmenter grabcut;
  std::vector<Interactive2DResult> results{run_interactive2d(oracle, ds, o),
                                           run_interactive2d(grabcut, ds, o)};
  std::vector<OverlayRecord> overlays;
  for (auto* seg : std::vector<segment::ImageSegmenter*>{&oracle, &grabcut}) {
    const auto& r = results[seg == &oracle ? 0 : 1];
    const auto ov = write_interactive2d_overlays(out.path.string(), *seg, ds, r, 1);
    overlays.insert(overlays.end(), ov.begin(), ov.end());
  }
  ReportOptions ro;
  ro.command = "medicosam eval --test";
  write_interactive2d_report(out.path.string(), results, overlays, ro);

  // per_image.csv: header + one row per case and iteration, numbers as computed.
  const auto rows = read_csv(out.path / "per_image.csv");
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows[0],
            (std::vector<std::string>{"dataset", "method", "image", "class", "start", "iteration",
                                      "n_objects", "gt_pixels", "dice", "iou", "nsd", "hd95"}));
  size_t expected_rows = 1;
  for (const auto& r : results) expected_rows += r.cases.size() * 3;
  ASSERT_EQ(rows.size(), expected_rows);
  for (size_t i = 1; i < rows.size(); ++i) ASSERT_EQ(rows[i].size(), 12u) << i;
  const auto& c0 = results[0].cases[0];
  EXPECT_EQ(rows[1][1], "oracle");
  EXPECT_EQ(rows[1][2], c0.image);
  EXPECT_NEAR(std::stod(rows[1][8]), c0.iterations[0].dice, 1e-6);

  // summary.json: the paper's four numbers per dataset x method.
  const auto j = nlohmann::json::parse(read_file((out.path / "summary.json").string()));
  ASSERT_EQ(j["results"].size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    const auto s = summarize(results[k]);
    const auto& jr = j["results"][k];
    EXPECT_EQ(jr["method"], results[k].method);
    EXPECT_EQ(jr["images"], 4);
    EXPECT_NEAR(jr["box"].get<double>(), *s.box, 1e-12);
    EXPECT_NEAR(jr["i_p"].get<double>(), *s.i_p, 1e-12);
    EXPECT_EQ(jr["starts"]["box"]["dice"].size(), 3u);
  }
  EXPECT_EQ(j["command"], "medicosam eval --test");
  EXPECT_EQ(j["results"][0]["i_b"].get<double>(), 1.0);  // the oracle is exact after two rounds
  EXPECT_EQ(
      nlohmann::json::parse(read_file((out.path / "per_image.json").string()))["cases"].size(),
      results[0].cases.size() + results[1].cases.size());
  const auto summary_rows = read_csv(out.path / "summary.csv");
  EXPECT_EQ(summary_rows.size(), 1u + 2 * 2 * 3);  // methods x starts x iterations

  // Plot and overlays decode; every overlay is linked from summary.md.
  const cv::Mat plot = cv::imread((out.path / "plots" / "discs_dice.png").string());
  EXPECT_EQ(plot.cols, 800);
  EXPECT_EQ(plot.rows, 500);
  EXPECT_EQ(overlays.size(), 2u * 2 * 2);  // methods x starts x {best, worst}
  const std::string md = read_file((out.path / "summary.md").string());
  for (const auto& ov : overlays) {
    EXPECT_FALSE(cv::imread((out.path / ov.path).string()).empty()) << ov.path;
    EXPECT_NE(md.find("](" + ov.path + ")"), std::string::npos) << ov.path;
    // The overlay is a deterministic re-run: same Dice as the evaluation.
    const auto& r = results[ov.method == "oracle" ? 0 : 1];
    bool found = false;
    for (const auto& c : r.cases)
      if (c.image == ov.image && c.start == ov.start) {
        EXPECT_EQ(c.iterations.back().dice, ov.dice_last);
        found = true;
      }
    EXPECT_TRUE(found);
  }
  EXPECT_NE(md.find("| dataset | split | method | images | Point | Box | I_P | I_B |"),
            std::string::npos);
  EXPECT_NE(md.find("](plots/discs_dice.png)"), std::string::npos);
  EXPECT_NE(md.find("| discs |"), std::string::npos);
  EXPECT_NE(md.find("grabcut"), std::string::npos);
}

TEST(Report, CsvFieldsAndNumbers) {
  EXPECT_EQ(csv_field("plain"), "plain");
  EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(format_number(0.123456, 3), "0.123");
  EXPECT_EQ(format_number(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(format_number(std::nan("")), "");
}
