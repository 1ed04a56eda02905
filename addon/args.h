// SPDX-License-Identifier: MIT
// args.h: checks of the arguments JavaScript passes to the addon.
//
// Every entry point checks each argument's type before reading it with As<>(): As<>()
// only reinterprets the handle, and a wrong type would turn into a crash or a garbage
// value instead of an exception. The helpers throw a TypeError for a wrong type and a
// RangeError for a value out of range, naming the argument; nothing is coerced. An index
// beyond info.Length() reads as undefined, so a missing argument fails its type check.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace heimdall {

// A typed array's elements, borrowed: valid while the array is reachable from the call.
template <typename T>
struct ArraySpan {
  T *data;
  size_t len;
};

// An integer-valued Number in min..max.
uint32_t ValueUint32(Napi::Env env, const Napi::Value &v, const char *what, uint32_t min = 0, uint32_t max = UINT32_MAX);

std::string ArgString(const Napi::CallbackInfo &info, size_t i, const char *what);
Napi::Object ArgObject(const Napi::CallbackInfo &info, size_t i, const char *what);
uint32_t ArgUint32(const Napi::CallbackInfo &info, size_t i, const char *what, uint32_t min = 0, uint32_t max = UINT32_MAX);
ArraySpan<uint32_t> ArgUint32Array(const Napi::CallbackInfo &info, size_t i, const char *what);
ArraySpan<double> ArgFloat64Array(const Napi::CallbackInfo &info, size_t i, const char *what);
// A Buffer of any length.
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo &info, size_t i, const char *what);
// A Buffer of exactly `size` bytes.
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo &info, size_t i, const char *what, size_t size);

// Properties of an options object, named "options.<key>" in errors.
uint32_t PropUint32(const Napi::Object &obj, const char *key, uint32_t min = 0, uint32_t max = UINT32_MAX);
Napi::Array PropArray(const Napi::Object &obj, const char *key);

}  // namespace heimdall
