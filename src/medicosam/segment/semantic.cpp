#include "medicosam/segment/semantic.hpp"

#include <string>

namespace medicosam::segment {

void describe_semantic_classes(io::LabelMap& labels, int64_t num_classes) {
  for (uint16_t l : labels.labels_present()) {
    io::SegmentInfo info;
    info.label = l;
    info.name = num_classes == 1 ? "Foreground" : "Class " + std::to_string(l);
    info.algorithm_type = "AUTOMATIC";
    info.algorithm_name = "medicosam semantic (UNETR)";
    labels.segments.push_back(info);
  }
}

}  // namespace medicosam::segment
