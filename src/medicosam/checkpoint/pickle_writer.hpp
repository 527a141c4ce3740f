#pragma once
// Pickle writer for torch.save-compatible data.pkl: protocol 2 and only the
// opcodes that torch.load, including torch 1.13's weights_only unpickler,
// understands (plus BINFLOAT for Python floats, which that unpickler lacks but
// plain torch.load reads).
#include <string>

#include "medicosam/checkpoint/value.hpp"

namespace medicosam::checkpoint {

// Pickles `root`. Tensors are written as
//   _rebuild_tensor_v2(persistent_id(('storage', torch.<X>Storage, key, 'cpu', numel)),
//                      storage_offset, size, stride, requires_grad, OrderedDict())
// so their storages must be written as `<stem>/data/<key>` next to data.pkl.
// Throws InputError (naming `path`) for values pickle cannot express here
// (opaque objects).
std::string pickle_dump(const RawValue& root, const std::string& path);

}  // namespace medicosam::checkpoint
