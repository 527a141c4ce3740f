#include "medicosam/segment/amg.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string_view>
#include <opencv2/imgproc.hpp>

#include "medicosam/checkpoint/mapped_file.hpp"
#include "medicosam/checkpoint/safetensors.hpp"
#include "medicosam/core/error.hpp"
#include "medicosam/core/progress.hpp"

namespace medicosam::segment {

std::vector<std::array<double, 2>> point_grid(int n) {
  std::vector<std::array<double, 2>> pts;
  if (n <= 0) return pts;
  const double offset = 1.0 / (2 * n);
  std::vector<double> side(n);
  for (int i = 0; i < n; ++i)
    side[i] = n == 1 ? offset : offset + (1 - 2 * offset) * i / (n - 1);  // np.linspace
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) pts.push_back({side[j], side[i]});
  return pts;
}

std::vector<std::array<int, 4>> crop_boxes(int H, int W, int n_layers, double overlap_ratio,
                                           std::vector<int>* layer_of_box) {
  std::vector<std::array<int, 4>> boxes{{0, 0, W, H}};
  std::vector<int> layers{0};
  const int short_side = std::min(H, W);
  auto crop_len = [](int orig, int n, int overlap) {
    return static_cast<int>(std::ceil((overlap * (n - 1) + orig) / static_cast<double>(n)));
  };
  for (int l = 0; l < n_layers; ++l) {
    const int n = 1 << (l + 1);
    const int overlap = static_cast<int>(overlap_ratio * short_side * (2.0 / n));
    const int cw = crop_len(W, n, overlap), ch = crop_len(H, n, overlap);
    for (int i = 0; i < n; ++i)      // x outer,
      for (int j = 0; j < n; ++j) {  // y inner (itertools.product order)
        const int x0 = (cw - overlap) * i, y0 = (ch - overlap) * j;
        boxes.push_back({x0, y0, std::min(x0 + cw, W), std::min(y0 + ch, H)});
        layers.push_back(l + 1);
      }
  }
  if (layer_of_box) *layer_of_box = layers;
  return boxes;
}

std::vector<size_t> box_nms(const std::vector<std::array<float, 4>>& b,
                            const std::vector<float>& scores, double thr) {
  std::vector<size_t> order(b.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return scores[x] > scores[y]; });
  std::vector<char> suppressed(b.size(), 0);
  std::vector<size_t> keep;
  const float t = static_cast<float>(thr);
  for (size_t a = 0; a < order.size(); ++a) {
    const size_t i = order[a];
    if (suppressed[i]) continue;
    keep.push_back(i);
    const float ai = (b[i][2] - b[i][0]) * (b[i][3] - b[i][1]);
    for (size_t c = a + 1; c < order.size(); ++c) {
      const size_t j = order[c];
      if (suppressed[j]) continue;
      const float w = std::max(0.f, std::min(b[i][2], b[j][2]) - std::max(b[i][0], b[j][0]));
      const float h = std::max(0.f, std::min(b[i][3], b[j][3]) - std::max(b[i][1], b[j][1]));
      const float inter = w * h;
      const float aj = (b[j][2] - b[j][0]) * (b[j][3] - b[j][1]);
      if (inter / (ai + aj - inter) > t) suppressed[j] = 1;
    }
  }
  return keep;
}

namespace {

// batched_mask_to_box: XYXY with inclusive max; [0,0,0,0] for an empty mask.
std::array<int, 4> mask_box(const uint8_t* m, int H, int W) {
  int x0 = W, y0 = H, x1 = -1, y1 = -1;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x)
      if (m[size_t(y) * W + x])
        x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  if (x1 < 0) return {0, 0, 0, 0};
  return {x0, y0, x1, y1};
}

// is_box_near_crop_edge (atol 20): near the crop's edge but not the image's.
bool near_crop_edge(const std::array<int, 4>& box, const std::array<int, 4>& crop, int H, int W) {
  const std::array<int, 4> image{0, 0, W, H};
  for (int k = 0; k < 4; ++k) {
    const bool near_crop = std::abs(box[k] - crop[k]) <= 20;
    const bool near_image = std::abs(box[k] - image[k]) <= 20;
    if (near_crop && !near_image) return true;
  }
  return false;
}

// remove_small_regions: fill holes / drop islands smaller than `area`. Returns true if changed.
bool remove_small_regions(BinaryMask& m, int area, bool holes) {
  cv::Mat work(m.height, m.width, CV_8UC1);
  for (size_t i = 0; i < m.data.size(); ++i)
    work.data[i] = (holes ? !m.data[i] : m.data[i]) ? 1 : 0;
  cv::Mat labels, stats, centroids;
  const int n = cv::connectedComponentsWithStats(work, labels, stats, centroids, 8, CV_32S);
  std::vector<int> small;
  for (int c = 1; c < n; ++c)
    if (stats.at<int>(c, cv::CC_STAT_AREA) < area) small.push_back(c);
  if (small.empty()) return false;
  std::vector<char> fill(n, 0);
  if (holes) {  // fill_labels = [0] + small: those become (or stay) the mask
    fill[0] = 1;
    for (int c : small) fill[c] = 1;
  } else {  // keep everything that is not small; if nothing is left keep the largest
    for (int c = 1; c < n; ++c) fill[c] = 1;
    for (int c : small) fill[c] = 0;
    if (std::none_of(fill.begin() + 1, fill.end(), [](char f) { return f; })) {
      int best = 1;
      for (int c = 1; c < n; ++c)
        if (stats.at<int>(c, cv::CC_STAT_AREA) > stats.at<int>(best, cv::CC_STAT_AREA)) best = c;
      fill[best] = 1;
    }
  }
  for (int y = 0; y < m.height; ++y)
    for (int x = 0; x < m.width; ++x)
      m.data[size_t(y) * m.width + x] = fill[labels.at<int>(y, x)] ? 1 : 0;
  return true;
}

std::array<float, 4> as_float(const std::array<int, 4>& b) {
  return {float(b[0]), float(b[1]), float(b[2]), float(b[3])};
}

}  // namespace

std::vector<std::array<int, 4>> generate_candidates(predict::SamPredictor& predictor, const uint8_t* rgb,
                                                    int H, int W, const AmgOptions& o,
                                                    const AmgCandidateVisitor& visit, bool progress) {
  if (!rgb || H <= 0 || W <= 0) throw InputError("automatic masks: empty image");
  if (o.points_per_side <= 0 || o.points_per_batch <= 0) {
    throw InputError("automatic masks: points_per_side and points_per_batch must be positive");
  }
  std::vector<int> layer;
  const auto crops = crop_boxes(H, W, o.crop_n_layers, o.crop_overlap_ratio, &layer);
  int64_t total_batches = 0;
  for (size_t c = 0; c < crops.size(); ++c) {
    const int n =
        static_cast<int>(o.points_per_side / std::pow(o.crop_n_points_downscale_factor, layer[c]));
    total_batches += (int64_t(n) * n + o.points_per_batch - 1) / o.points_per_batch;
  }
  Progress bar(total_batches, "automatic masks", progress);
  for (size_t c = 0; c < crops.size(); ++c) {
    const auto& cb = crops[c];
    const int cw = cb[2] - cb[0], ch = cb[3] - cb[1];
    std::vector<uint8_t> crop(size_t(cw) * ch * 3);
    for (int y = 0; y < ch; ++y)
      std::copy_n(rgb + (size_t(y + cb[1]) * W + cb[0]) * 3, size_t(cw) * 3,
                  crop.data() + size_t(y) * cw * 3);
    predictor.set_image(crop.data(), ch, cw, 3);
    const int n =
        static_cast<int>(o.points_per_side / std::pow(o.crop_n_points_downscale_factor, layer[c]));
    const auto grid = point_grid(n);
    for (size_t start = 0; start < grid.size(); start += o.points_per_batch) {
      const size_t end = std::min(grid.size(), start + o.points_per_batch);
      std::vector<predict::Prompt> prompts;
      for (size_t i = start; i < end; ++i) {
        predict::Prompt p;
        p.points = {{grid[i][0] * cw, grid[i][1] * ch, 1}};
        prompts.push_back(std::move(p));
      }
      const auto preds =
          predictor.predict_batch(prompts, /*multimask_output=*/true, /*want_logits=*/true);
      const size_t hw = size_t(ch) * cw;
      for (size_t i = 0; i < preds.size(); ++i) {
        const auto& pr = preds[i];
        for (int k = 0; k < pr.num_masks; ++k) {
          const double iou = pr.iou_predictions[k];
          if (o.pred_iou_thresh > 0 && !(iou > o.pred_iou_thresh)) continue;
          const float* lg = pr.logits.data() + k * hw;
          const float hi = static_cast<float>(o.mask_threshold + o.stability_score_offset);
          const float lo = static_cast<float>(o.mask_threshold - o.stability_score_offset);
          int64_t inter = 0, uni = 0;
          for (size_t p = 0; p < hw; ++p) inter += lg[p] > hi, uni += lg[p] > lo;
          const double stability = static_cast<float>(inter) / static_cast<float>(uni);
          if (o.stability_score_thresh > 0 && !(stability >= o.stability_score_thresh)) continue;
          const uint8_t* m = pr.masks.data() + k * hw;
          auto box = mask_box(m, ch, cw);
          const std::array<int, 4> ubox{box[0] + cb[0], box[1] + cb[1], box[2] + cb[0],
                                        box[3] + cb[1]};
          if (crops.size() > 1 && near_crop_edge(ubox, cb, H, W)) continue;
          AmgCandidate cand;
          cand.predicted_iou = iou;
          cand.stability_score = stability;
          cand.box = ubox;
          cand.crop = static_cast<int>(c);
          cand.point = {prompts[i].points[0].x + cb[0], prompts[i].points[0].y + cb[1], 1};
          visit(cand, m, cb);
        }
      }
      bar.advance();
    }
  }
  bar.finish();
  return crops;
}

std::vector<size_t> select_candidates(const std::vector<AmgCandidate>& cands,
                                      const std::vector<std::array<int, 4>>& crops, const AmgOptions& o) {
  std::vector<size_t> all;
  // Candidates come crop by crop; NMS within each crop, by predicted IoU.
  for (size_t begin = 0; begin < cands.size();) {
    size_t end = begin;
    while (end < cands.size() && cands[end].crop == cands[begin].crop) ++end;
    std::vector<size_t> idx;
    std::vector<std::array<float, 4>> fb;
    std::vector<float> sc;
    for (size_t i = begin; i < end; ++i) {
      const auto& c = cands[i];
      if (o.pred_iou_thresh > 0 && !(c.predicted_iou > o.pred_iou_thresh)) continue;
      if (o.stability_score_thresh > 0 && !(c.stability_score >= o.stability_score_thresh)) continue;
      idx.push_back(i);
      fb.push_back(as_float(c.box));
      sc.push_back(static_cast<float>(c.predicted_iou));
    }
    for (size_t k : box_nms(fb, sc, o.box_nms_thresh)) all.push_back(idx[k]);
    begin = end;
  }
  if (crops.size() > 1) {  // across crops: prefer masks from smaller crops
    std::vector<std::array<float, 4>> fb;
    std::vector<float> sc;
    for (size_t i : all) {
      fb.push_back(as_float(cands[i].box));
      const auto& cb = crops.at(size_t(cands[i].crop));
      sc.push_back(1.0f / static_cast<float>((cb[2] - cb[0]) * (cb[3] - cb[1])));
    }
    std::vector<size_t> kept;
    for (size_t k : box_nms(fb, sc, o.crop_nms_thresh)) kept.push_back(all[k]);
    all = std::move(kept);
  }
  return all;
}

std::vector<AmgMask> generate_masks(predict::SamPredictor& predictor, const uint8_t* rgb, int H,
                                    int W, const AmgOptions& o, bool progress) {
  std::vector<AmgCandidate> cands;
  std::vector<AmgMask> masks;
  const auto crops = generate_candidates(
      predictor, rgb, H, W, o,
      [&](const AmgCandidate& c, const uint8_t* m, const std::array<int, 4>& cb) {
        const int cw = cb[2] - cb[0], ch = cb[3] - cb[1];
        AmgMask am;
        am.mask = BinaryMask(H, W);
        for (int y = 0; y < ch; ++y)
          std::copy_n(m + size_t(y) * cw, cw, am.mask.data.data() + size_t(y + cb[1]) * W + cb[0]);
        am.area = am.mask.area();
        am.predicted_iou = c.predicted_iou;
        am.stability_score = c.stability_score;
        am.point = c.point;
        am.crop_box = cb;
        masks.push_back(std::move(am));
        cands.push_back(c);
      },
      progress);
  std::vector<AmgMask> all;
  std::vector<std::array<int, 4>> all_boxes;  // XYXY image coords (inclusive max)
  for (size_t i : select_candidates(cands, crops, o)) {
    all.push_back(std::move(masks[i]));
    all_boxes.push_back(cands[i].box);
  }
  auto select = [&](const std::vector<size_t>& keep) {
    std::vector<AmgMask> m;
    std::vector<std::array<int, 4>> b;
    for (size_t i : keep) m.push_back(std::move(all[i])), b.push_back(all_boxes[i]);
    all = std::move(m);
    all_boxes = std::move(b);
  };
  if (o.min_mask_region_area > 0 && !all.empty()) {
    std::vector<std::array<float, 4>> fb;
    std::vector<float> sc;
    for (size_t i = 0; i < all.size(); ++i) {
      const bool holes = remove_small_regions(all[i].mask, o.min_mask_region_area, true);
      const bool islands = remove_small_regions(all[i].mask, o.min_mask_region_area, false);
      const bool unchanged = !holes && !islands;
      all_boxes[i] = mask_box(all[i].mask.data.data(), H, W);
      all[i].area = all[i].mask.area();
      fb.push_back(as_float(all_boxes[i]));
      sc.push_back(unchanged ? 1.f : 0.f);
    }
    // SAM runs this NMS with max(box_nms_thresh, crop_nms_thresh): masks from
    // different crops passed the crop NMS at crop_nms_thresh and must not be
    // suppressed here by the stricter per-crop threshold.
    select(box_nms(fb, sc, std::max(o.box_nms_thresh, o.crop_nms_thresh)));
  }
  for (size_t i = 0; i < all.size(); ++i) {
    const auto& b = all_boxes[i];
    all[i].bbox = {b[0], b[1], b[2] - b[0], b[3] - b[1]};
  }
  return all;
}

std::vector<uint16_t> masks_to_label_map(const std::vector<AmgMask>& masks, int H, int W,
                                         int64_t min_object_size) {
  std::vector<size_t> order(masks.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return masks[a].area > masks[b].area; });
  std::vector<uint32_t> seg(size_t(H) * W, 0);
  uint32_t id = 0;
  for (size_t i : order) {
    const auto& m = masks[i];
    if (m.area < min_object_size) continue;
    if (m.mask.height != H || m.mask.width != W) throw InputError("mask of the wrong size");
    ++id;
    for (size_t p = 0; p < seg.size(); ++p)
      if (m.mask.data[p]) seg[p] = id;
  }
  // Consecutive ids among those that kept pixels (relabel_sequential).
  std::vector<uint32_t> remap(id + 1, 0);
  for (auto v : seg)
    if (v) remap[v] = 1;
  uint32_t next = 0;
  for (uint32_t v = 1; v <= id; ++v)
    if (remap[v]) remap[v] = ++next;
  if (next > 65535) throw InputError("more than 65535 automatic masks");
  std::vector<uint16_t> out(seg.size());
  for (size_t p = 0; p < seg.size(); ++p) out[p] = static_cast<uint16_t>(remap[seg[p]]);
  return out;
}

std::string AmgDefaults::describe() const {
  if (!from_checkpoint) return "SAM's defaults";
  std::string d = std::string("checkpoint metadata ") + kAmgMetadataKey;
  if (record.is_object() && record.contains("calibrated_on") && record["calibrated_on"].is_string())
    d += " (calibrated on " + record["calibrated_on"].get<std::string>() + ")";
  return d;
}

namespace {

double threshold_field(const nlohmann::json& rec, const char* key, const std::string& source) {
  if (!rec.contains(key) || !rec[key].is_number())
    throw CheckpointError("'" + source + "': metadata " + kAmgMetadataKey + " has no number '" + key + "'");
  const double v = rec[key].get<double>();
  if (!(v >= 0.0 && v <= 1.0))
    throw CheckpointError("'" + source + "': metadata " + kAmgMetadataKey + " '" + key + "' = " +
                          rec[key].dump() + " is outside [0, 1]");
  return v;
}

}  // namespace

AmgDefaults amg_defaults_from_metadata(const nlohmann::json& metadata, const std::string& source) {
  AmgDefaults d;
  if (!metadata.is_object() || !metadata.contains(kAmgMetadataKey)) return d;
  const auto& v = metadata[kAmgMetadataKey];
  nlohmann::json rec;
  if (v.is_string()) {
    try {
      rec = nlohmann::json::parse(v.get<std::string>());
    } catch (const nlohmann::json::exception&) {
      throw CheckpointError("'" + source + "': metadata " + kAmgMetadataKey + " is not valid JSON");
    }
  } else {
    rec = v;
  }
  if (!rec.is_object())
    throw CheckpointError("'" + source + "': metadata " + kAmgMetadataKey + " is not a JSON object");
  d.pred_iou_thresh = threshold_field(rec, "pred_iou_thresh", source);
  d.stability_score_thresh = threshold_field(rec, "stability_score_thresh", source);
  d.from_checkpoint = true;
  d.record = std::move(rec);
  return d;
}

AmgDefaults read_amg_defaults(const std::string& path) {
  const checkpoint::MappedFile file(path);
  const std::string_view bytes(reinterpret_cast<const char*>(file.data()), file.size());
  // Other formats (.pth, .pt) carry no defaults; the loader reports real format problems.
  if (!checkpoint::looks_like_safetensors(bytes)) return {};
  const auto header = checkpoint::parse_safetensors(bytes, path);
  return amg_defaults_from_metadata(nlohmann::json(header.metadata), path);
}

std::string amg_metadata_value(double pred, double stab, const nlohmann::json& extra) {
  for (auto [name, v] : {std::pair<const char*, double>{"pred_iou_thresh", pred}, {"stability_score_thresh", stab}})
    if (!(v >= 0.0 && v <= 1.0))
      throw InputError(std::string(name) + " " + std::to_string(v) + ": must lie in [0, 1]");
  nlohmann::json rec = extra.is_object() ? extra : nlohmann::json::object();
  rec["pred_iou_thresh"] = pred;
  rec["stability_score_thresh"] = stab;
  return rec.dump();
}

}  // namespace medicosam::segment
