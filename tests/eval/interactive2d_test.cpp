// The 2D interactive protocol, checked with oracle segmenters: exact oracles
// must reach Dice 1, eroding ones must improve with clicks, and the prompts
// the protocol sends must follow micro_sam's iterative prompting.
#include <gtest/gtest.h>

#include <cmath>

#include "medicosam/core/error.hpp"
#include "medicosam/eval/interactive2d.hpp"
#include "medicosam/eval/oracle.hpp"
#include "test_util.hpp"

using namespace medicosam;
using namespace medicosam::eval;
using namespace medicosam::eval::testing;

namespace {

// Two classes: "a" with two discs, "b" with a rectangle plus a 3x3 speck
// (below min_object_size: not prompted, but part of the truth).
Sample2D two_class_sample(const std::string& name = "s0") {
  const int H = 80, W = 120;
  auto a = mask_or(disc_mask(H, W, 20, 20, 10), disc_mask(H, W, 60, 50, 12));
  auto b = rect_mask(H, W, 85, 10, 110, 40);
  auto b_with_speck = mask_or(b, rect_mask(H, W, 100, 70, 103, 73));
  return make_sample(name, synthetic_image(mask_or(a, b)), {{"a", a}, {"b", b_with_speck}});
}

Interactive2DOptions quiet() {
  Interactive2DOptions o;
  o.progress = false;
  return o;
}

}  // namespace

TEST(Interactive2D, ExactOracleReachesDiceOne) {
  OracleSegmenter oracle;
  const Sample2D s = two_class_sample();
  auto o = quiet();
  const auto cases = run_interactive2d_sample(oracle, s, "synthetic", o);
  ASSERT_EQ(cases.size(), 4u);  // 2 classes x 2 starts
  for (const auto& c : cases) {
    ASSERT_EQ(c.iterations.size(), 8u);
    if (c.class_name == "a") {
      EXPECT_EQ(c.n_objects, 2);
      for (const auto& m : c.iterations) {
        EXPECT_EQ(m.dice, 1.0) << start_name(c.start);
        EXPECT_EQ(m.nsd, 1.0);
        EXPECT_EQ(m.hd95, 0.0);
      }
    } else {
      // The 9 px speck is never prompted: Dice = 2*750 / (750 + 759).
      EXPECT_EQ(c.n_objects, 1);
      EXPECT_EQ(c.gt_pixels, 759);
      for (const auto& m : c.iterations) EXPECT_NEAR(m.dice, 1500.0 / 1509.0, 1e-12);
    }
  }
  // One image encode for all classes and starts.
  EXPECT_EQ(oracle.images_set(), 1);
}

TEST(Interactive2D, PromptsFollowMicroSamIterativePrompting) {
  OracleOptions oo;
  oo.low_res_size = 16;
  OracleSegmenter oracle(oo);
  const Sample2D s = two_class_sample();
  auto o = quiet();
  o.n_iterations = 4;
  for (StartPrompt start : {StartPrompt::kPoint, StartPrompt::kBox}) {
    ASSERT_TRUE(run_interactive2d_case(oracle, s, "synthetic", "a", start, o));
    const auto& calls = oracle.calls();
    ASSERT_EQ(calls.size(), 4u);  // one batched call per iteration (2 objects < batch size)
    for (size_t it = 0; it < calls.size(); ++it) {
      ASSERT_EQ(calls[it].size(), 2u);
      for (const auto& p : calls[it]) {
        const size_t start_points = start == StartPrompt::kPoint ? 1 : 0;
        ASSERT_EQ(p.points.size(), start_points + 2 * it);
        EXPECT_EQ(p.box.has_value(), start == StartPrompt::kBox);  // the box is kept
        EXPECT_EQ(p.mask_input.has_value(), it > 0);               // previous logits fed back
        if (p.mask_input) {
          EXPECT_EQ(p.mask_input->size(), 16u * 16u);
        }
        for (size_t k = start_points; k < p.points.size(); ++k) {
          EXPECT_EQ(p.points[k].label,
                    (k - start_points) % 2 == 0 ? 1 : 0);  // positive, then negative
        }
      }
    }
    if (start == StartPrompt::kPoint) {
      // The start point is the object's centre (distance-transform maximum).
      EXPECT_EQ(calls[0][0].points[0].x, 20);
      EXPECT_EQ(calls[0][0].points[0].y, 20);
    } else {
      EXPECT_EQ(calls[0][0].box->x0, 10);
      EXPECT_EQ(calls[0][0].box->x1, 31);  // exclusive max
    }
  }
  o.use_masks = false;
  ASSERT_TRUE(run_interactive2d_case(oracle, s, "synthetic", "a", StartPrompt::kBox, o));
  for (const auto& call : oracle.calls())
    for (const auto& p : call) EXPECT_FALSE(p.mask_input.has_value());
}

TEST(Interactive2D, MultimaskStartKeepsTheBestPredictedIou) {
  // The oracle's multimask output is {empty, answer, whole image} with the
  // answer ranked best: taking mask 0 would give Dice 0, mask 2 far below 1.
  OracleSegmenter oracle;
  auto o = quiet();
  o.starts = {StartPrompt::kPoint};
  o.n_iterations = 1;
  const auto cases = run_interactive2d_sample(oracle, two_class_sample(), "synthetic", o);
  ASSERT_FALSE(cases.empty());
  EXPECT_EQ(cases[0].iterations[0].dice, 1.0);
}

TEST(Interactive2D, CorrectiveClicksImproveAnErodingOracle) {
  OracleOptions oo;
  oo.erosion = 5;  // one pixel better per correction round
  OracleSegmenter oracle(oo);
  const int H = 90, W = 90;
  const auto m = disc_mask(H, W, 45, 45, 30);
  const Sample2D s = make_sample("disc", synthetic_image(m), {{"lesion", m}});
  auto o = quiet();
  const auto cases = run_interactive2d_sample(oracle, s, "synthetic", o);
  for (const auto& c : cases) {
    for (size_t it = 1; it < c.iterations.size(); ++it) {
      if (it <= 5) {
        EXPECT_GT(c.iterations[it].dice, c.iterations[it - 1].dice) << it;
      } else {
        EXPECT_EQ(c.iterations[it].dice, 1.0);
      }
    }
    EXPECT_LT(c.iterations[0].dice, 0.9);
    EXPECT_GT(c.iterations[0].hd95, 4.0);
  }
}

TEST(Interactive2D, SameSeedSameNumbersOtherSeedOtherClicks) {
  OracleOptions oo;
  oo.erosion = 3;
  const Sample2D s = two_class_sample();
  auto o = quiet();
  o.n_iterations = 3;
  OracleSegmenter a(oo), b(oo);
  ASSERT_TRUE(run_interactive2d_case(a, s, "d", "a", StartPrompt::kBox, o));
  ASSERT_TRUE(run_interactive2d_case(b, s, "d", "a", StartPrompt::kBox, o));
  auto points_of = [](const OracleSegmenter& x) {
    std::vector<double> v;
    for (const auto& p : x.calls().back())
      for (const auto& pt : p.points) v.insert(v.end(), {pt.x, pt.y, double(pt.label)});
    return v;
  };
  EXPECT_EQ(points_of(a), points_of(b));
  o.seed = 12345;
  ASSERT_TRUE(run_interactive2d_case(b, s, "d", "a", StartPrompt::kBox, o));
  EXPECT_NE(points_of(a), points_of(b));
  // The seed of a case depends on its identity, not on the order of work.
  EXPECT_EQ(case_seed(0, "d", "img", "a", StartPrompt::kBox),
            case_seed(0, "d", "img", "a", StartPrompt::kBox));
  EXPECT_NE(case_seed(0, "d", "img", "a", StartPrompt::kBox),
            case_seed(0, "d", "img", "a", StartPrompt::kPoint));
  EXPECT_NE(case_seed(0, "d", "img", "a", StartPrompt::kBox),
            case_seed(1, "d", "img", "a", StartPrompt::kBox));
  EXPECT_NE(case_seed(0, "d", "ab", "c", StartPrompt::kBox),
            case_seed(0, "d", "a", "bc", StartPrompt::kBox));
}

TEST(Interactive2D, CaseDetailReproducesTheRun) {
  OracleOptions oo;
  oo.erosion = 4;
  OracleSegmenter oracle(oo);
  const Sample2D s = two_class_sample();
  auto o = quiet();
  const auto cases = run_interactive2d_sample(oracle, s, "d", o);
  for (const auto& c : cases) {
    const auto d = run_interactive2d_case(oracle, s, "d", c.class_name, c.start, o);
    ASSERT_TRUE(d);
    ASSERT_EQ(d->predictions.size(), c.iterations.size());
    ASSERT_EQ(d->prompts.size(), c.iterations.size());
    for (size_t it = 0; it < c.iterations.size(); ++it) {
      EXPECT_EQ(d->result.iterations[it].dice, c.iterations[it].dice);
      EXPECT_EQ(d->result.iterations[it].hd95, c.iterations[it].hd95);
    }
  }
  EXPECT_THROW(run_interactive2d_case(oracle, s, "d", "nope", StartPrompt::kBox, o), InputError);
}

TEST(Interactive2D, SmallObjectsOnlyAreSkipped) {
  OracleSegmenter oracle;
  const auto speck = rect_mask(40, 40, 5, 5, 9, 9);  // 16 px < 20
  const Sample2D s = make_sample("tiny", synthetic_image(speck), {{"foreground", speck}});
  EXPECT_TRUE(run_interactive2d_sample(oracle, s, "d", quiet()).empty());
  auto o = quiet();
  o.min_object_size = 10;
  EXPECT_EQ(run_interactive2d_sample(oracle, s, "d", o).size(), 2u);
}

TEST(Interactive2D, SummaryIsClassMeanOfImageMeans) {
  Interactive2DResult r;
  r.method = "m";
  r.dataset = "d";
  r.options.n_iterations = 2;
  r.options.starts = {StartPrompt::kBox};
  auto add = [&](const std::string& image, const std::string& cls, double d0, double d1) {
    CaseResult c;
    c.image = image;
    c.class_name = cls;
    c.start = StartPrompt::kBox;
    Metrics m0, m1;
    m0.dice = d0;
    m1.dice = d1;
    m0.hd95 = 2.0;
    m1.hd95 = std::numeric_limits<double>::infinity();
    c.iterations = {m0, m1};
    r.cases.push_back(c);
  };
  add("i1", "liver", 0.2, 0.4);
  add("i2", "liver", 0.4, 0.8);
  add("i1", "spleen", 1.0, 1.0);
  const auto s = summarize(r);
  ASSERT_TRUE(s.box && s.i_b);
  EXPECT_FALSE(s.point);
  EXPECT_NEAR(*s.box, (0.3 + 1.0) / 2, 1e-12);  // not (0.2 + 0.4 + 1.0) / 3
  EXPECT_NEAR(*s.i_b, (0.6 + 1.0) / 2, 1e-12);
  const auto* st = s.find(StartPrompt::kBox);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->n_cases, 3);
  EXPECT_EQ(st->n_images, 2);
  EXPECT_EQ(st->hd95_undefined[1], 3);
  EXPECT_DOUBLE_EQ(st->hd95[0], 2.0);
  EXPECT_TRUE(std::isnan(st->hd95[1]));
  ASSERT_EQ(st->classes, (std::vector<std::string>{"liver", "spleen"}));
  EXPECT_NEAR(st->class_dice[0][1], 0.6, 1e-12);
}

TEST(Interactive2D, BadOptionsAreRejected) {
  OracleSegmenter oracle;
  auto o = quiet();
  o.n_iterations = 0;
  EXPECT_THROW(run_interactive2d_sample(oracle, two_class_sample(), "d", o), InputError);
  o = quiet();
  o.starts.clear();
  EXPECT_THROW(run_interactive2d_sample(oracle, two_class_sample(), "d", o), InputError);
  EXPECT_THROW(parse_start("lasso"), InputError);
  EXPECT_EQ(parse_start("box"), StartPrompt::kBox);
}

TEST(Interactive2D, AnySampleSourceAndOnImageCallback) {
  OracleOptions oo;
  oo.erosion = 2;
  OracleSegmenter oracle(oo);
  std::vector<Sample2D> samples{two_class_sample("x0"), two_class_sample("x1")};
  int seen = 0;
  auto o = quiet();
  o.n_iterations = 3;
  const auto r = run_interactive2d(
      oracle, "mem", samples.size(), [&](size_t i) { return samples[i]; }, o,
      [&](const std::vector<CaseResult>& cases) { seen += int(cases.size()); });
  EXPECT_EQ(r.dataset, "mem");
  EXPECT_EQ(r.images, 2);
  EXPECT_EQ(r.cases.size(), 8u);  // 2 images x 2 classes x 2 starts
  EXPECT_EQ(seen, 8);
  const auto s = summarize(r);
  ASSERT_TRUE(s.box && s.i_b);
  EXPECT_LT(*s.box, *s.i_b);  // the eroding oracle improves with correction rounds
}

TEST(Interactive2D, SummaryCountsCorrectionsThatMadeItWorse) {
  Interactive2DResult r;
  r.method = "m";
  r.dataset = "d";
  r.options.n_iterations = 3;
  r.options.starts = {StartPrompt::kBox};
  auto add = [&](const std::string& image, std::vector<double> dice) {
    CaseResult c;
    c.image = image;
    c.class_name = "foreground";
    c.start = StartPrompt::kBox;
    for (double d : dice) {
      Metrics m;
      m.dice = d;
      c.iterations.push_back(m);
    }
    r.cases.push_back(c);
  };
  add("i1", {0.5, 0.4, 0.6});      // round 1 worse, ends above its start
  add("i2", {0.8, 0.9, 0.7});      // round 2 worse, ends below its start
  add("i3", {0.7, 0.7, 0.7005});   // changes below the tolerance are not "worse"
  add("i4", {0.6, 0.6995, 0.699}); // a 0.0005 drop: not worse
  const auto sum = summarize(r);
  const auto* st = sum.find(StartPrompt::kBox);
  ASSERT_TRUE(st);
  ASSERT_EQ(st->worse_share.size(), 3u);
  EXPECT_TRUE(std::isnan(st->worse_share[0]));
  EXPECT_DOUBLE_EQ(st->worse_share[1], 0.25);
  EXPECT_DOUBLE_EQ(st->worse_share[2], 0.25);
  EXPECT_DOUBLE_EQ(st->worse_rounds, 2.0 / 8);
  EXPECT_DOUBLE_EQ(st->worse_final, 0.25);

  // Without correction rounds there is nothing to count.
  r.options.n_iterations = 1;
  for (auto& c : r.cases) c.iterations.resize(1);
  const auto sum1 = summarize(r);
  const auto* one = sum1.find(StartPrompt::kBox);
  ASSERT_TRUE(one);
  EXPECT_TRUE(std::isnan(one->worse_rounds));
  EXPECT_TRUE(std::isnan(one->worse_final));
}
