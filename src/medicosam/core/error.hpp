#pragma once
// Typed exceptions thrown at the API edge. Every message names the input and
// the problem; the CLI prints `what()` as one line and exits non-zero.
#include <stdexcept>
#include <string>

namespace medicosam {

// Base of every error medicosam throws on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The user gave us something we cannot use: a bad file, argument or prompt.
class InputError : public Error {
 public:
  using Error::Error;
};

// A file exists but its content is malformed, truncated or unsafe.
class FormatError : public InputError {
 public:
  using InputError::InputError;
};

// A checkpoint does not fit the model (missing, unexpected or mis-shaped keys).
class CheckpointError : public InputError {
 public:
  using InputError::InputError;
};

// Writing an output failed (disk full, permission denied, ...).
class IoError : public Error {
 public:
  using Error::Error;
};

}  // namespace medicosam
