#pragma once
// Restricted unpickler for torch.save's data.pkl (pickle protocols 0-5, the
// opcodes Python's pickler emits for plain containers) and trainer wrapper dicts.
//
// Nothing is ever executed: the only globals accepted are the handful torch.save
// needs (collections.OrderedDict, torch._utils._rebuild_tensor_v2/_v3,
// _rebuild_parameter[_with_state], torch._tensor._rebuild_from_type_v2, storage
// classes, dtypes, and _codecs.encode / bytes for protocol-2 bytes objects), and
// each is interpreted by this code. Any other global (os.system, builtins.eval,
// ...) makes the whole file fail with a FormatError naming it. Every read is
// bounds-checked; malformed input raises FormatError, never a crash.
#include <string>
#include <string_view>

#include "medicosam/checkpoint/value.hpp"

namespace medicosam::checkpoint {

// Unpickles `data`. `path` (the file) and `entry` (e.g. "model/data.pkl") label
// error messages. Tensors come back as TensorRef views whose storage_key names
// the zip entry `<stem>/data/<storage_key>`; they are not checked against the
// storages here (see the torch bridge).
RawValue unpickle(std::string_view data, const std::string& path, const std::string& entry);

}  // namespace medicosam::checkpoint
