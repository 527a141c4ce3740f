// The semantic protocol (eval/semantic.hpp): per-class Dice, IoU, NSD and
// HD95 against an independent brute-force computation, the aggregation rules
// (classes absent from both left out, HD95 only where both are present), the
// report files, and clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "medicosam/core/atomic_file.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/eval/semantic.hpp"
#include "test_util.hpp"

using namespace medicosam;
using namespace medicosam::eval;
using namespace medicosam::eval::testing;
namespace fs = std::filesystem;

namespace {

constexpr int H = 40, W = 50;

using Labels = std::vector<uint16_t>;

void paint(Labels& l, const segment::BinaryMask& m, uint16_t v) {
  for (size_t i = 0; i < l.size(); ++i)
    if (m.data[i]) l[i] = v;
}

// Replays fixed predictions in the order the images are visited (sorted stems).
class Replay : public SemanticSegmenter {
 public:
  explicit Replay(std::vector<Labels> p, int classes = 3) : preds_(std::move(p)), classes_(classes) {}
  std::string name() const override { return "replay"; }
  int num_classes() const override { return classes_; }
  std::vector<uint16_t> segment(const uint8_t*, int h, int w) override {
    EXPECT_EQ(h, H);
    EXPECT_EQ(w, W);
    return preds_.at(next_++);
  }

 private:
  std::vector<Labels> preds_;
  int classes_;
  size_t next_ = 0;
};

// ---- independent reference: brute force over all pixel pairs
struct Ref {
  double dice, iou, nsd, hd95;
};

std::vector<std::pair<int, int>> surface(const Labels& l, uint16_t c) {
  std::vector<std::pair<int, int>> s;
  auto in = [&](int y, int x) { return y >= 0 && y < H && x >= 0 && x < W && l[size_t(y) * W + x] == c; };
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x)
      if (in(y, x) && (!in(y - 1, x) || !in(y + 1, x) || !in(y, x - 1) || !in(y, x + 1))) s.push_back({y, x});
  return s;
}

std::vector<double> nearest(const std::vector<std::pair<int, int>>& a, const std::vector<std::pair<int, int>>& b) {
  std::vector<double> d;
  for (auto [y, x] : a) {
    double best = 1e300;
    for (auto [v, u] : b) best = std::min(best, std::hypot(double(y - v), double(x - u)));
    d.push_back(best);
  }
  return d;
}

double pct95(std::vector<double> v) {  // numpy linear interpolation
  std::sort(v.begin(), v.end());
  const double pos = 0.95 * (v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

Ref reference(const Labels& pred, const Labels& gt, uint16_t c, double tol) {
  int64_t inter = 0, p = 0, g = 0, uni = 0;
  for (size_t i = 0; i < pred.size(); ++i) {
    inter += pred[i] == c && gt[i] == c;
    p += pred[i] == c;
    g += gt[i] == c;
    uni += pred[i] == c || gt[i] == c;
  }
  Ref r{2.0 * inter / std::max<double>(p + g, 1e-7), uni ? double(inter) / uni : 1.0, 0, 0};
  const auto sp = surface(pred, c), sg = surface(gt, c);
  if (sp.empty() || sg.empty()) {
    r.nsd = 0;
    r.hd95 = INFINITY;
    return r;
  }
  const auto dp = nearest(sp, sg), dg = nearest(sg, sp);
  int64_t ok = 0;
  for (double d : dp) ok += d <= tol;
  for (double d : dg) ok += d <= tol;
  r.nsd = double(ok) / (dp.size() + dg.size());
  r.hd95 = std::max(pct95(dp), pct95(dg));
  return r;
}

struct Case {
  std::string stem;
  Labels gt, pred;
};

std::vector<Case> cases() {
  std::vector<Case> v(3);
  for (auto& c : v) c.gt = c.pred = Labels(size_t(H) * W, 0);
  v[0].stem = "a";
  paint(v[0].gt, rect_mask(H, W, 5, 5, 25, 20), 1);
  paint(v[0].gt, disc_mask(H, W, 38, 20, 6), 2);
  paint(v[0].pred, rect_mask(H, W, 7, 8, 27, 23), 1);
  paint(v[0].pred, disc_mask(H, W, 39, 21, 5), 2);
  v[1].stem = "b";
  paint(v[1].gt, rect_mask(H, W, 10, 10, 30, 30), 1);
  paint(v[1].pred, rect_mask(H, W, 12, 12, 28, 28), 1);
  paint(v[1].pred, rect_mask(H, W, 40, 2, 46, 6), 2);  // a false positive of class 2
  v[2].stem = "c";
  paint(v[2].gt, disc_mask(H, W, 25, 20, 8), 2);  // missed entirely; class 1 absent from both
  return v;
}

void write_dataset(const fs::path& root, const std::vector<Case>& cs) {
  fs::create_directories(root / "images");
  fs::create_directories(root / "instances");
  for (const auto& c : cs) {
    segment::BinaryMask any(H, W);
    for (size_t i = 0; i < c.gt.size(); ++i) any.data[i] = c.gt[i] != 0;
    write_rgb_png(root / "images" / (c.stem + ".png"), synthetic_image(any));
    cv::Mat m(H, W, CV_8UC1);
    for (size_t i = 0; i < c.gt.size(); ++i) m.data[i] = static_cast<uint8_t>(c.gt[i]);
    cv::imwrite((root / "instances" / (c.stem + ".png")).string(), m);
  }
}

std::unique_ptr<train::SampleSource> open(const fs::path& root, const std::string& classes = "ids") {
  train::DatasetSpec spec;
  spec.type = "folder";
  spec.path = root.string();
  spec.classes = classes;
  spec.normalize = "minmax";
  return train::open_dataset(spec);
}

TEST(SemanticEval, MetricsMatchABruteForceComputation) {
  TempDir tmp("semantic");
  const auto cs = cases();
  write_dataset(tmp.path / "toy", cs);
  std::vector<Labels> preds;
  for (const auto& c : cs) preds.push_back(c.pred);
  Replay model(preds);
  SemanticEvalOptions o;
  o.nsd_tolerance_mm = 2.0;
  o.progress = false;
  const auto src = open(tmp.path / "toy");
  const auto r = run_semantic(model, *src, "toy", o);
  ASSERT_EQ(r.images.size(), 3u);

  // Expected per class: means over the images where the class is in gt or pred.
  for (uint16_t c = 1; c <= 2; ++c) {
    double dice = 0, iou = 0, nsd = 0, hd = 0;
    int n = 0, both = 0;
    for (size_t i = 0; i < cs.size(); ++i) {
      const bool in_g = std::count(cs[i].gt.begin(), cs[i].gt.end(), c) > 0;
      const bool in_p = std::count(cs[i].pred.begin(), cs[i].pred.end(), c) > 0;
      if (!in_g && !in_p) continue;
      const Ref ref = reference(cs[i].pred, cs[i].gt, c, 2.0);
      const auto& m = r.images[i].metrics[c - 1];
      EXPECT_NEAR(m.dice, ref.dice, 1e-12) << cs[i].stem << " class " << c;
      EXPECT_NEAR(m.iou, ref.iou, 1e-12) << cs[i].stem << " class " << c;
      EXPECT_NEAR(m.nsd, ref.nsd, 1e-12) << cs[i].stem << " class " << c;
      if (std::isfinite(ref.hd95)) {
        EXPECT_NEAR(m.hd95, ref.hd95, 1e-9) << cs[i].stem << " class " << c;
      }
      dice += ref.dice, iou += ref.iou, nsd += ref.nsd, ++n;
      if (in_g && in_p) hd += ref.hd95, ++both;
    }
    const auto s = r.per_class().at(c - 1);
    EXPECT_EQ(s.class_id, c);
    EXPECT_EQ(s.images, n);
    EXPECT_EQ(s.both_present, both);
    EXPECT_NEAR(s.dice, dice / n, 1e-12);
    EXPECT_NEAR(s.iou, iou / n, 1e-12);
    EXPECT_NEAR(s.nsd, nsd / n, 1e-12);
    EXPECT_NEAR(s.hd95, hd / both, 1e-9);
  }
  // The scenario's aggregation: class 1 left out of image c, class 2 counted in all three.
  EXPECT_EQ(r.per_class()[0].images, 2);
  EXPECT_EQ(r.per_class()[1].images, 3);
  EXPECT_EQ(r.per_class()[1].both_present, 1);
  EXPECT_NEAR(r.mean_dice(), (r.per_class()[0].dice + r.per_class()[1].dice) / 2, 1e-12);
  EXPECT_GT(r.per_class()[0].dice, 0.5);  // sanity: shifted rectangles overlap well
  EXPECT_LT(r.per_class()[1].dice, 0.5);  // a false positive and a miss

  // The report: summary.csv holds the same numbers.
  write_semantic_report((tmp.path / "report").string(), {r}, o, {"t", "medicosam eval ...", {}});
  for (const char* f : {"summary.md", "summary.json", "summary.csv", "per_image.csv"})
    EXPECT_TRUE(fs::exists(tmp.path / "report" / f)) << f;
  std::ifstream csv(tmp.path / "report" / "summary.csv");
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "dataset,method,class,images,both_present,dice,iou,nsd,hd95");
  for (int c = 1; c <= 2; ++c) {
    std::getline(csv, line);
    std::stringstream ls(line);
    std::vector<std::string> f;
    for (std::string v; std::getline(ls, v, ',');) f.push_back(v);
    ASSERT_EQ(f.size(), 9u) << line;
    EXPECT_EQ(f[2], std::to_string(c));
    EXPECT_NEAR(std::stod(f[5]), r.per_class()[c - 1].dice, 1e-4);
    EXPECT_NEAR(std::stod(f[8]), r.per_class()[c - 1].hd95, 1e-4);
  }
  const auto j = nlohmann::json::parse(std::ifstream(tmp.path / "report" / "summary.json"));
  EXPECT_NEAR(j["results"][0]["mean_dice"].get<double>(), r.mean_dice(), 1e-9);
  EXPECT_EQ(j["results"][0]["classes"].size(), 2u);
}

TEST(SemanticEval, SpacingScalesSurfaceDistances) {
  TempDir tmp("semantic_sp");
  auto cs = cases();
  cs.resize(1);
  write_dataset(tmp.path / "toy", cs);
  SemanticEvalOptions o;
  o.progress = false;
  Replay m1({cs[0].pred}), m2({cs[0].pred});
  const auto a = run_semantic(m1, *open(tmp.path / "toy"), "toy", o);
  o.spacing = {0.5, 0.5};
  const auto b = run_semantic(m2, *open(tmp.path / "toy"), "toy", o);
  EXPECT_NEAR(b.per_class()[0].hd95, a.per_class()[0].hd95 / 2, 1e-9);
  EXPECT_DOUBLE_EQ(b.per_class()[0].dice, a.per_class()[0].dice);
}

TEST(SemanticEval, ForegroundModeAndClearErrors) {
  TempDir tmp("semantic_err");
  const auto cs = cases();
  write_dataset(tmp.path / "toy", cs);
  SemanticEvalOptions o;
  o.progress = false;
  // A one-class model against class ids 1 and 2: refused, naming the image.
  Replay one({cs[0].pred}, 2);
  try {
    run_semantic(one, *open(tmp.path / "toy"), "toy", o);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("class id 2"), std::string::npos) << e.what();
  }
  // "foreground": every labelled pixel is class 1, which the 2-class model can score.
  std::vector<Labels> fg;
  for (const auto& c : cs) {
    Labels l(c.gt.size());
    for (size_t i = 0; i < l.size(); ++i) l[i] = c.gt[i] != 0;
    fg.push_back(l);
  }
  Replay perfect(fg, 2);
  const auto r = run_semantic(perfect, *open(tmp.path / "toy", "foreground"), "toy", o);
  EXPECT_DOUBLE_EQ(r.mean_dice(), 1.0);
  EXPECT_DOUBLE_EQ(r.per_class()[0].hd95, 0.0);
  EXPECT_DOUBLE_EQ(r.per_class()[0].nsd, 1.0);
}

}  // namespace
