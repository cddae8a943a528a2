// Tests for the regex map: PopMap (maps/regex/popmap.{h,cc}) directly, and the module
// loaded as the host loads it, dlopen(MAPS_BUILDDIR "/regex.so").
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "../common/module_test.h"
#include "popmap.h"

namespace sy {
namespace {

PopMap must_load(std::string_view text) {
  std::string error;
  auto map = PopMap::load_from_string(text, "test.re", &error);
  EXPECT_TRUE(map) << error;
  if (!map) return *PopMap::load_from_string("", "empty", nullptr);
  return std::move(*map);
}

std::string load_error(std::string_view text) {
  std::string error;
  auto map = PopMap::load_from_string(text, "test.re", &error);
  EXPECT_FALSE(map) << "loaded: " << text;
  return error;
}

TEST(PopMap, PerditionStyleRule) {
  auto map = must_load("^(.*)@example\\.org: $1@store1.example.net:143\n");
  EXPECT_EQ(map.size(), 1u);
  EXPECT_EQ(map.lookup("jane@example.org"), "jane@store1.example.net:143");
  EXPECT_EQ(map.lookup("jane@example.com"), std::nullopt);
}

TEST(PopMap, ColonIsOptional) {
  auto map = must_load(
      "^a  x1\n"
      "^b: x2\n"
      "^c : x3\n"
      "^d:\tx4\n");
  EXPECT_EQ(map.lookup("a"), "x1");
  EXPECT_EQ(map.lookup("b"), "x2");
  EXPECT_EQ(map.lookup("c"), "x3");
  EXPECT_EQ(map.lookup("d"), "x4");
}

TEST(PopMap, OnlyOneTrailingColonIsRemoved) {
  auto map = must_load("^port:: x\n");  // the regex is "^port:"
  EXPECT_EQ(map.lookup("port:"), "x");
  EXPECT_EQ(map.lookup("port"), std::nullopt);
}

TEST(PopMap, CommentsBlankLinesAndCrLf) {
  auto map = must_load(
      "# popmap.re\n"
      "\n"
      "   \t\n"
      "  # an indented comment\n"
      "^jane: store1   # a trailing comment\r\n"
      "^joe: store2\r\n"
      "^ann: store3");  // no final newline
  EXPECT_EQ(map.size(), 3u);
  EXPECT_EQ(map.lookup("jane"), "store1");
  EXPECT_EQ(map.lookup("joe"), "store2");
  EXPECT_EQ(map.lookup("ann"), "store3");
}

TEST(PopMap, DollarOneToNine) {
  auto map = must_load("^(a)(b)(c)(d)(e)(f)(g)(h)(i)$: $9$8$7$6$5$4$3$2$1\n");
  EXPECT_EQ(map.lookup("abcdefghi"), "ihgfedcba");
}

TEST(PopMap, DollarFollowedByAnythingElseIsLiteral) {
  auto map = must_load("^(x)(y)$: $0-$$1-$10-$a-$\n");
  // "$0" literal, "$$1" = '$' then $1, "$10" = $1 then '0', "$a" literal, final '$' literal.
  EXPECT_EQ(map.lookup("xy"), "$0-$x-x0-$a-$");
}

TEST(PopMap, UnsetGroupIsEmpty) {
  auto map = must_load("^(?:(a)|(b))$: [$1][$2]\n");
  EXPECT_EQ(map.lookup("a"), "[a][]");
  EXPECT_EQ(map.lookup("b"), "[][b]");
}

TEST(PopMap, FirstMatchWins) {
  auto map = must_load(
      "^jane@: special\n"
      "@example\\.org$: @store1\n"
      ".*: fallback\n");
  EXPECT_EQ(map.lookup("jane@example.org"), "special");
  EXPECT_EQ(map.lookup("joe@example.org"), "joe@store1");
  EXPECT_EQ(map.lookup("joe@elsewhere"), "fallback");
}

// Perdition keeps the text of the key before the match and drops the text after it.
TEST(PopMap, TextBeforeTheMatchIsKept) {
  auto map = must_load("@example: @store1\n");
  EXPECT_EQ(map.lookup("jane@example.org"), "jane@store1");
  EXPECT_EQ(map.lookup("@example"), "@store1");
}

TEST(PopMap, Unanchored) {
  auto map = must_load("an: X\n");
  EXPECT_EQ(map.lookup("jane"), "jX");
  EXPECT_EQ(map.lookup("an"), "X");
}

TEST(PopMap, CaseSensitive) {
  auto map = must_load("^JANE$: store1\n");
  EXPECT_EQ(map.lookup("jane"), std::nullopt);
  EXPECT_EQ(map.lookup("JANE"), "store1");
}

TEST(PopMap, EmptyMatchAndEmptyKey) {
  auto map = must_load("^$: nobody\nx*: [$0]\n");
  EXPECT_EQ(map.lookup(""), "nobody");
  EXPECT_EQ(map.lookup("abc"), "[$0]");  // x* matches the empty string at 0
}

TEST(PopMap, PosixClassesAndIntervals) {
  auto map = must_load("^([[:alpha:]]{2,3})[[:digit:]]+$: $1@store\n");
  EXPECT_EQ(map.lookup("ab12"), "ab@store");
  EXPECT_EQ(map.lookup("a12"), std::nullopt);
}

TEST(PopMap, KeyIsMatchedAsBytes) {
  auto map = must_load("^(.)(.)$: $2$1\n");
  EXPECT_EQ(map.lookup("\xc3\xa4"), "\xa4\xc3");  // two bytes, no UTF mode
}

TEST(PopMap, EmptyFileHasNoRules) {
  auto map = must_load("# nothing here\n\n");
  EXPECT_EQ(map.size(), 0u);
  EXPECT_EQ(map.find("jane").status, PopMap::Status::kNotFound);
}

TEST(PopMap, BadRegexReportsFileAndLine) {
  std::string error = load_error("# comment\n^ok: x\n^a(b: y\n");
  EXPECT_EQ(error.rfind("test.re:3: regex \"^a(b\": ", 0), 0u) << error;
  EXPECT_NE(error.find("missing closing parenthesis"), std::string::npos) << error;
}

TEST(PopMap, MissingSubstitution) {
  EXPECT_EQ(load_error("^a:\n"), "test.re:1: no substitution after \"^a:\"");
  EXPECT_EQ(load_error("\n^a : \n"), "test.re:2: no substitution after \"^a\"");
}

TEST(PopMap, EmptyRegex) { EXPECT_EQ(load_error(": x\n"), "test.re:1: empty regex"); }

TEST(PopMap, ExtraTokenIsAnError) {
  EXPECT_EQ(load_error("^a: x y\n"),
            "test.re:1: unexpected \"y\" after the substitution (one regex and one "
            "substitution a line)");
}

TEST(PopMap, ReferenceToAMissingGroupIsAnError) {
  EXPECT_EQ(load_error("^(a)(b): $3\n"),
            "test.re:1: substitution \"$3\" uses $3 but the regex has 2 groups");
  EXPECT_EQ(load_error("^a: x$1\n"),
            "test.re:1: substitution \"x$1\" uses $1 but the regex has 0 groups");
}

TEST(PopMap, MatchLimitIsAnErrorNotAFallThrough) {
  auto map = must_load("^(a+)+$: slow\n.*: fallback\n");
  auto r = map.find(std::string(40, 'a') + "b");
  EXPECT_EQ(r.status, PopMap::Status::kError);
  EXPECT_NE(r.text.find("line 1: "), std::string::npos) << r.text;
  EXPECT_EQ(map.lookup("aaa"), "slow");
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/switchyard-regex-test-XXXXXX";
    if (mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    if (!path_.empty()) std::filesystem::remove_all(path_);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::string path = path_ + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(PopMap, LoadFromFile) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::string path = dir.write("popmap.re", "^(.*)@a: $1@store1\n^bad(: x\n");
  std::string error;
  EXPECT_FALSE(PopMap::load(path, &error));
  EXPECT_EQ(error.rfind(path + ":2: regex \"^bad(\": ", 0), 0u) << error;

  path = dir.write("good.re", "^(.*)@a: $1@store1\n");
  auto map = PopMap::load(path, &error);
  ASSERT_TRUE(map) << error;
  EXPECT_EQ(map->lookup("x@a"), "x@store1");

  EXPECT_FALSE(PopMap::load(dir.path() + "/missing.re", &error));
  EXPECT_EQ(error, dir.path() + "/missing.re: No such file or directory");
}

// The module, as the host sees it.
class RegexModuleTest : public sy::maps::test::ModuleTest {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    ASSERT_NO_FATAL_FAILURE(load("regex.so"));
  }

  std::pair<int, std::string> get(const char* key, const char* options) {
    GetReply r = fetch(key, options);
    return {r.rc, r.value};
  }

  TempDir dir_;
};

TEST_F(RegexModuleTest, InitThenGet) {
  std::string path = dir_.write("popmap.re", "^(.*)@example\\.org: $1@store1:143\n");
  ASSERT_EQ(init(path), 0);
  EXPECT_EQ(get("jane@example.org", path.c_str()), std::make_pair(0, std::string("jane@store1:143")));
  EXPECT_EQ(get("jane@example.com", path.c_str()).first, -2);
}

TEST_F(RegexModuleTest, BadFileFailsInitAndGet) {
  std::string path = dir_.write("bad.re", "^a(: x\n");
  EXPECT_EQ(init(path), -1);
  EXPECT_EQ(get("a", path.c_str()).first, -1);
  std::string missing = dir_.path() + "/missing.re";
  EXPECT_EQ(init(missing), -1);
  EXPECT_EQ(get("a", missing.c_str()).first, -1);
}

TEST_F(RegexModuleTest, GetLoadsLazilyAndFollowsItsOptions) {
  std::string one = dir_.write("one.re", ".*: one\n");
  std::string two = dir_.write("two.re", ".*: two\n");
  EXPECT_EQ(get("k", one.c_str()).second, "one");  // no init at all
  ASSERT_EQ(init(one), 0);
  EXPECT_EQ(get("k", two.c_str()).second, "two");
  EXPECT_EQ(fini_(), 0);
  EXPECT_EQ(get("k", one.c_str()).second, "one");
}

TEST_F(RegexModuleTest, RulesAreKeptUntilReinit) {
  std::string path = dir_.write("popmap.re", ".*: old\n");
  ASSERT_EQ(init(path), 0);
  dir_.write("popmap.re", ".*: new\n");
  EXPECT_EQ(get("k", path.c_str()).second, "old");
  EXPECT_EQ(fini_(), 0);
  ASSERT_EQ(init(path), 0);
  EXPECT_EQ(get("k", path.c_str()).second, "new");
}

TEST_F(RegexModuleTest, MatchLimitIsADatabaseError) {
  std::string path = dir_.write("popmap.re", "^(a+)+$: slow\n");
  ASSERT_EQ(init(path), 0);
  std::string key = std::string(40, 'a') + "b";
  EXPECT_EQ(get(key.c_str(), path.c_str()).first, -1);
}

TEST_F(RegexModuleTest, NullArguments) {
  std::string path = dir_.write("popmap.re", ".*: x\n");
  char* str = nullptr;
  std::size_t len = 0;
  EXPECT_EQ(get_(nullptr, path.c_str(), &str, &len), -3);
  EXPECT_EQ(get_("k", path.c_str(), nullptr, &len), -3);
}

TEST_F(RegexModuleTest, NullOptionsMeanTheDefaultPath) {
  // The default path is used: it fails unless this machine really has that file.
  if (std::filesystem::exists("/etc/switchyard/popmap.re")) {
    EXPECT_NE(init_(nullptr), -3);
    return;
  }
  EXPECT_EQ(init_(nullptr), -1);
  EXPECT_EQ(get("k", nullptr).first, -1);
}

}  // namespace
}  // namespace sy
