// What the unit tests of the shipped map modules share: a module loaded as the host loads
// it, dlopen(MAPS_BUILDDIR "/NAME.so") and Perdition's three symbols, and dbserver_get
// called as the host calls it, with the ABI's promises checked on every call (a found
// value is malloc'd and NUL-terminated with *len_return its strlen; no value otherwise).
#ifndef SWITCHYARD_MAPS_COMMON_MODULE_TEST_H
#define SWITCHYARD_MAPS_COMMON_MODULE_TEST_H

#include <dlfcn.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#ifndef MAPS_BUILDDIR
#define MAPS_BUILDDIR "maps/.libs"
#endif

namespace sy::maps::test {

using InitFn = int (*)(char*);
using GetFn = int (*)(const char*, const char*, char**, std::size_t*);
using FiniFn = int (*)();

// A fixture base: SetUp() calls ASSERT_NO_FATAL_FAILURE(load("NAME.so")); TearDown() runs
// dbserver_fini and unloads.
class ModuleTest : public ::testing::Test {
 protected:
  // What dbserver_get returned: the code and, when found, the value.
  struct GetReply {
    int rc;
    std::string value;
  };

  void load(const char* file) {
    const std::string path = std::string(MAPS_BUILDDIR "/") + file;
    handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(handle_, nullptr) << dlerror();
    init_ = reinterpret_cast<InitFn>(dlsym(handle_, "dbserver_init"));
    get_ = reinterpret_cast<GetFn>(dlsym(handle_, "dbserver_get"));
    fini_ = reinterpret_cast<FiniFn>(dlsym(handle_, "dbserver_fini"));
    ASSERT_NE(init_, nullptr);
    ASSERT_NE(get_, nullptr);
    ASSERT_NE(fini_, nullptr);
  }

  void TearDown() override {
    if (fini_) fini_();
    if (handle_) dlclose(handle_);
  }

  // dbserver_init with a copy of `options` (it takes a char*); NULL stays NULL.
  int init(const char* options) {
    if (options == nullptr) return init_(nullptr);
    std::string copy = options;
    return init_(copy.data());
  }
  int init(const std::string& options) { return init(options.c_str()); }

  GetReply fetch(const char* key, const char* options) {
    char* str = nullptr;
    std::size_t len = 12345;
    int rc = get_(key, options, &str, &len);
    GetReply r{rc, {}};
    if (rc == 0) {
      EXPECT_NE(str, nullptr);
      if (str != nullptr) {
        EXPECT_EQ(len, std::strlen(str)) << "value must be NUL-terminated, len its strlen";
        r.value.assign(str, len);
      }
    } else {
      EXPECT_EQ(str, nullptr) << "no value with rc " << rc;
    }
    std::free(str);
    return r;
  }

  void* handle_ = nullptr;
  InitFn init_ = nullptr;
  GetFn get_ = nullptr;
  FiniFn fini_ = nullptr;
};

}  // namespace sy::maps::test

#endif
