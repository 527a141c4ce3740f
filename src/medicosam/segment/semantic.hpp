#pragma once
// What a semantic (UNETR) head's label map says about itself: one segment per
// class present, made by an algorithm. Shared by `medicosam semantic` and the
// server's "<model>_semantic" model, so a DICOM SEG of either reads the same.
#include <cstdint>

#include "medicosam/io/volume.hpp"

namespace medicosam::segment {

// Adds a SegmentInfo for every label present in `labels`: "Foreground" for a
// one-class head, else "Class N"; algorithm type AUTOMATIC.
void describe_semantic_classes(io::LabelMap& labels, int64_t num_classes);

}  // namespace medicosam::segment
