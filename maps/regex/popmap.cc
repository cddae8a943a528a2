// PopMap: Perdition popmap.re rules compiled with PCRE2 (contract in popmap.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "popmap.h"

#include <pcre2.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace sy {
namespace {

// Generous for user names; a pathological pattern fails instead of spinning.
constexpr uint32_t kMatchLimit = 1'000'000;
constexpr uint32_t kDepthLimit = 10'000;

struct CodeFree {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct MatchDataFree {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
struct MatchContextFree {
  void operator()(pcre2_match_context* context) const { pcre2_match_context_free(context); }
};

pcre2_match_context* match_context() {  // read-only after creation
  static const std::unique_ptr<pcre2_match_context, MatchContextFree> context = [] {
    std::unique_ptr<pcre2_match_context, MatchContextFree> c(pcre2_match_context_create(nullptr));
    if (c) {
      pcre2_set_match_limit(c.get(), kMatchLimit);
      pcre2_set_depth_limit(c.get(), kDepthLimit);
    }
    return c;
  }();
  return context.get();
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof buffer) < 0)
    return "PCRE2 error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

std::vector<std::string_view> split_tokens(std::string_view line) {
  std::vector<std::string_view> tokens;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) tokens.push_back(line.substr(start, i - start));
  }
  return tokens;
}

// The highest $N the substitution uses (0 when none).
uint32_t highest_reference(std::string_view substitution) {
  uint32_t highest = 0;
  for (std::size_t i = 0; i + 1 < substitution.size(); ++i) {
    char next = substitution[i + 1];
    if (substitution[i] == '$' && next >= '1' && next <= '9') {
      highest = std::max<uint32_t>(highest, static_cast<uint32_t>(next - '0'));
      ++i;
    }
  }
  return highest;
}

}  // namespace

struct PopMap::Rule {
  std::unique_ptr<pcre2_code, CodeFree> code;
  std::string substitution;
  std::size_t line = 0;
};

PopMap::PopMap() = default;
PopMap::PopMap(PopMap&&) noexcept = default;
PopMap& PopMap::operator=(PopMap&&) noexcept = default;
PopMap::~PopMap() = default;

std::size_t PopMap::size() const { return rules_.size(); }

std::optional<PopMap> PopMap::load_from_string(std::string_view text, std::string_view name,
                                               std::string* error) {
  PopMap map;
  std::size_t line_number = 0;
  auto fail = [&](const std::string& message) {
    if (error) *error = std::string(name) + ":" + std::to_string(line_number) + ": " + message;
    return std::nullopt;
  };
  while (!text.empty()) {
    ++line_number;
    auto newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    auto tokens = split_tokens(line);
    if (tokens.empty() || tokens[0].front() == '#') continue;

    std::string_view regex = tokens[0];
    std::size_t next = 1;
    if (regex.back() == ':') {
      regex.remove_suffix(1);
    } else if (tokens.size() > 1 && tokens[1] == ":") {
      next = 2;
    }
    if (regex.empty()) return fail("empty regex");
    if (tokens.size() <= next) return fail("no substitution after \"" + std::string(tokens[0]) + "\"");
    std::string_view substitution = tokens[next];
    if (tokens.size() > next + 1 && tokens[next + 1].front() != '#')
      return fail("unexpected \"" + std::string(tokens[next + 1]) +
                  "\" after the substitution (one regex and one substitution a line)");

    int code = 0;
    PCRE2_SIZE offset = 0;
    Rule rule;
    rule.code.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(regex.data()), regex.size(), 0,
                                  &code, &offset, nullptr));
    if (!rule.code)
      return fail("regex \"" + std::string(regex) + "\": " + pcre2_message(code) +
                  " at offset " + std::to_string(offset));
    uint32_t groups = 0;
    pcre2_pattern_info(rule.code.get(), PCRE2_INFO_CAPTURECOUNT, &groups);
    uint32_t wanted = highest_reference(substitution);
    if (wanted > groups)
      return fail("substitution \"" + std::string(substitution) + "\" uses $" +
                  std::to_string(wanted) + " but the regex has " + std::to_string(groups) +
                  (groups == 1 ? " group" : " groups"));
    rule.substitution = substitution;
    rule.line = line_number;
    map.rules_.push_back(std::move(rule));
  }
  return std::optional<PopMap>(std::move(map));
}

std::optional<PopMap> PopMap::load(const std::string& path, std::string* error) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    if (error) *error = path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::string text;
  char buffer[8192];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) text.append(buffer, n);
  bool failed = std::ferror(file) != 0;
  int saved_errno = errno;
  std::fclose(file);
  if (failed) {
    if (error) *error = path + ": " + std::strerror(saved_errno);
    return std::nullopt;
  }
  return load_from_string(text, path, error);
}

PopMap::Result PopMap::find(std::string_view key) const {
  for (const Rule& rule : rules_) {
    std::unique_ptr<pcre2_match_data, MatchDataFree> data(
        pcre2_match_data_create_from_pattern(rule.code.get(), nullptr));
    if (!data) return {Status::kError, "out of memory"};
    const char* subject = key.data() ? key.data() : "";  // older PCRE2 refuse NULL, even empty
    int rc = pcre2_match(rule.code.get(), reinterpret_cast<PCRE2_SPTR>(subject), key.size(), 0,
                         0, data.get(), match_context());
    if (rc == PCRE2_ERROR_NOMATCH) continue;
    if (rc < 0)
      return {Status::kError, "line " + std::to_string(rule.line) + ": " + pcre2_message(rc)};

    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    uint32_t pairs = pcre2_get_ovector_count(data.get());
    std::string out(key.substr(0, ovector[0]));  // the text before the match
    const std::string& sub = rule.substitution;
    for (std::size_t i = 0; i < sub.size(); ++i) {
      char next = i + 1 < sub.size() ? sub[i + 1] : '\0';
      if (sub[i] != '$' || next < '1' || next > '9') {
        out += sub[i];
        continue;
      }
      uint32_t group = static_cast<uint32_t>(next - '0');
      ++i;
      if (group >= pairs) continue;
      PCRE2_SIZE start = ovector[2 * group], end = ovector[2 * group + 1];
      if (start == PCRE2_UNSET || end < start) continue;  // unset; or \K oddities
      out.append(key.substr(start, end - start));
    }
    return {Status::kFound, std::move(out)};
  }
  return {Status::kNotFound, {}};
}

std::optional<std::string> PopMap::lookup(std::string_view key) const {
  Result r = find(key);
  if (r.status != Status::kFound) return std::nullopt;
  return std::move(r.text);
}

}  // namespace sy
