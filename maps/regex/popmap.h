// PopMap: the rules of a Perdition popmap.re file, compiled with PCRE2, and the lookup.
// Pure: no logging; load() reads the one file it is given.
//
// The file, one rule a line:
//   <regex>[:] <substitution>    e.g.   ^(.*)@example\.org:  $1@store1.example.net:143
// '#' as the first non-blank character starts a comment line; blank lines are ignored; a
// token starting with '#' after the substitution is a trailing comment. The regex is the
// first token (spaces and tabs separate tokens, so write \s or [[:space:]] for a blank); a
// trailing ':' on it is removed (a lone ":" token between the two is accepted too). Other
// extra tokens are an error.
//
// Lookup: rules are tried in file order, case-sensitively and unanchored; the first that
// matches wins. The result is the text of the key before the match followed by the
// substitution, in which $1..$9 are the capture groups (an unset group is empty); a '$'
// followed by anything else is a literal '$'. A substitution that names a group its regex
// does not have is a load error.
//
// Dialect: PCRE2's defaults, close to POSIX ERE ((), |, +, ?, {m,n}, [[:alpha:]]) except that
// alternation is leftmost-first rather than leftmost-longest. Keys are matched as bytes (no
// UTF mode). Matching has PCRE2 match and depth limits; a key that exceeds them is an error,
// never a fall-through to a later rule.
//
// A PopMap owns its compiled patterns; it is movable, not copyable, and const lookups may
// run from several threads at once.
#ifndef SWITCHYARD_MAPS_REGEX_POPMAP_H
#define SWITCHYARD_MAPS_REGEX_POPMAP_H

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

// Hidden: the module links its own copy, which must not bind to a host's symbols.
class __attribute__((visibility("hidden"))) PopMap {
 public:
  enum class Status { kFound, kNotFound, kError };
  struct Result {
    Status status = Status::kNotFound;
    std::string text;  // the answer when kFound, the reason when kError
  };

  // Reads and compiles `path`. On failure returns nullopt and sets *error to
  // "path:line: message" (or "path: message" when the file cannot be read).
  [[nodiscard]] static std::optional<PopMap> load(const std::string& path, std::string* error);
  // The same from text; `name` stands for the path in error messages.
  [[nodiscard]] static std::optional<PopMap> load_from_string(std::string_view text,
                                                              std::string_view name,
                                                              std::string* error);

  [[nodiscard]] Result find(std::string_view key) const;
  // The answer, or nullopt when no rule matches (or matching failed).
  [[nodiscard]] std::optional<std::string> lookup(std::string_view key) const;

  std::size_t size() const;  // the number of rules

  PopMap(PopMap&&) noexcept;
  PopMap& operator=(PopMap&&) noexcept;
  ~PopMap();

 private:
  struct Rule;
  PopMap();
  std::vector<Rule> rules_;
};

}  // namespace sy

#endif
