// Pattern semantics, pinned against a table and against Cilium's own
// regular expressions (pkg/fqdn/matchpattern) used as an oracle.
#include "fqdn/matcher.hpp"
#include "fqdn/name.hpp"

#include <doctest/doctest.h>

#include <random>
#include <regex>

using fqdnd::FqdnMatcher;
using fqdnd::FqdnSelector;
using fqdnd::normalize_name;

namespace {

// The anchored regex Cilium builds for a canonical selector text.
std::regex cilium_regex(const FqdnSelector& s)
{
    const std::string chars = "[-a-zA-Z0-9_]";
    if (s.is_match_all())
        return std::regex("(^(" + chars + "+[.])+$)|(^[.]$)");
    std::string re = "^";
    std::string_view text = s.text;
    if (s.is_subdomain_wildcard()) {
        re += "(" + chars + "+([.]" + chars + "+){0,})[.]";
        text.remove_prefix(3);
    }
    for (char c : text) {
        if (c == '.')
            re += "[.]";
        else if (c == '*')
            re += chars + "*";
        else
            re += c;
    }
    return std::regex(re + "$");
}

bool matches(const FqdnSelector& s, std::string_view raw_name)
{
    const auto name = normalize_name(raw_name);
    if (!name)
        return false;
    const FqdnMatcher m(std::span(&s, 1));
    return !m.match(*name).empty();
}

FqdnSelector pattern(std::string_view p)
{
    std::string error;
    auto s = FqdnSelector::parse_pattern(p, &error);
    REQUIRE_MESSAGE(s, error);
    return *s;
}

FqdnSelector name(std::string_view n)
{
    std::string error;
    auto s = FqdnSelector::parse_name(n, &error);
    REQUIRE_MESSAGE(s, error);
    return *s;
}

struct Case {
    bool is_pattern;
    std::string selector;
    std::string name;
    bool expected;
};

const std::string label63(63, 'a');
const std::string label64(64, 'a');

} // namespace

TEST_CASE("selectors match names as DESIGN.md and Cilium say")
{
    const std::vector<Case> cases = {
        // DESIGN.md, "Pattern semantics"
        {true, "*.k8s.intra", "echo.k8s.intra", true},
        {true, "*.k8s.intra", "k8s.intra", false},
        {true, "*.k8s.intra", "a.b.k8s.intra", false},
        {true, "*", "echo.k8s.intra", true},
        {true, "*", "a.b.c.d.e.f", true},
        {true, "*", "io", true},
        {true, "**.k8s.intra", "echo.k8s.intra", true},
        {true, "**.k8s.intra", "a.b.k8s.intra", true},
        {true, "**.k8s.intra", "k8s.intra", false},
        {true, "**.k8s.intra", "k8s.intra.evil", false},
        {false, "api.github.com", "api.github.com", true},
        {false, "api.github.com", "API.GitHub.com.", true},
        {false, "api.github.com", "www.api.github.com", false},
        {false, "echo.k8s.intra.", "echo.k8s.intra", true},
        // a '*' inside a label: zero or more of [-a-zA-Z0-9_], never a dot
        {true, "api-*.example.com", "api-v1.example.com", true},
        {true, "api-*.example.com", "api-.example.com", true},
        {true, "api-*.example.com", "api.example.com", false},
        {true, "api-*.example.com", "api-v1.eu.example.com", false},
        {true, "*-api.example.com", "eu-api.example.com", true},
        {true, "*-api.example.com", "eu-api2.example.com", false},
        {true, "a*b*c.example.com", "abc.example.com", true},
        {true, "a*b*c.example.com", "a-x-b-y-c.example.com", true},
        {true, "a*b*c.example.com", "acb.example.com", false},
        {true, "*.ci*.io", "anysub.cilium.io", true},
        {true, "*.ci*.io", "anysub.ci.io", true},
        {true, "*.ci*.io", "cilium.io", false},
        {true, "example.*", "example.com", true},
        {true, "example.*", "example.co.uk", false},
        // case, trailing dot, characters
        {true, "*.K8S.Intra", "ECHO.k8s.INTRA.", true},
        {true, "*.k8s.intra.", "echo.k8s.intra", true},
        {true, "*.*.cilium.io", "_foobar._tcp.cilium.io", true},
        {false, "_foobar._tcp.cilium.io", "_foobar._tcp.cilium.io", true},
        {true, "*.k8s.intra", "bad name.k8s.intra", false},
        {true, "*", "*.k8s.intra", false},
        // empty labels and the root
        {true, "*", "a..k8s.intra", false},
        {true, "*.k8s.intra", ".k8s.intra", false},
        {true, "*", ".", true},
        {false, ".", ".", true},
        {false, ".", "com", false},
        {true, "*.k8s.intra", ".", false},
        {true, "**.k8s.intra", ".", false},
        // 63-character labels are names; 64 are not
        {true, "*.k8s.intra", label63 + ".k8s.intra", true},
        {true, "*.k8s.intra", label64 + ".k8s.intra", false},
        {false, label63 + ".k8s.intra", label63 + ".k8s.intra", true},
        // every match-all spelling, and '**' away from the prefix is a '*'
        {true, "**", "a.b.c", true},
        {true, "*.", "a.b.c", true},
        {true, "**.", "a", true},
        {true, "***.k8s.intra", "a.b.k8s.intra", true},
        {true, "a.**.com", "a.b.com", true},
        {true, "a.**.com", "a.b.c.com", false},
        {true, "**com", "example.com", false},
        {true, "**com", "telecom", true},
        {true, "**.*.k8s.intra", "a.b.k8s.intra", true},
        {true, "**.*.k8s.intra", "b.k8s.intra", false},
    };
    CHECK(cases.size() >= 40);
    for (const Case& c : cases) {
        CAPTURE(c.selector);
        CAPTURE(c.name);
        const FqdnSelector s = c.is_pattern ? pattern(c.selector) : name(c.selector);
        CHECK(matches(s, c.name) == c.expected);
        // Cilium's regex agrees wherever the name is a valid name.
        if (const auto n = normalize_name(c.name))
            CHECK(std::regex_match(*n, cilium_regex(s)) == c.expected);
    }
}

TEST_CASE("selectors are canonical: same meaning, same text")
{
    CHECK(pattern("*.K8s.Intra").text == "*.k8s.intra.");
    CHECK(pattern("**").text == "*");
    CHECK(pattern("*.").text == "*");
    CHECK(pattern("***.").text == "*");
    CHECK(pattern("****.k8s.intra").text == "**.k8s.intra.");
    CHECK(pattern("a**b.com").text == "a*b.com.");
    CHECK(name("Echo.K8s.Intra").text == "echo.k8s.intra.");
    CHECK(pattern("*.k8s.intra") == pattern("*.k8s.intra."));
    CHECK(pattern("echo.k8s.intra") != name("echo.k8s.intra"));
}

TEST_CASE("bad selectors are refused with the reason")
{
    std::string error;
    CHECK_FALSE(FqdnSelector::parse_pattern("", &error));
    CHECK_FALSE(FqdnSelector::parse_pattern("a b.com", &error));
    CHECK(error.find("character") != std::string::npos);
    CHECK_FALSE(FqdnSelector::parse_pattern("a..com", &error));
    CHECK(error.find("empty label") != std::string::npos);
    CHECK_FALSE(FqdnSelector::parse_pattern(".com", &error));
    CHECK_FALSE(FqdnSelector::parse_pattern("**..", &error));
    CHECK_FALSE(FqdnSelector::parse_pattern("[a-z].com", &error));
    CHECK_FALSE(FqdnSelector::parse_pattern(std::string(256, 'a'), &error));
    CHECK(error.find("255") != std::string::npos);
    CHECK_FALSE(FqdnSelector::parse_pattern(label64 + ".com", &error));
    CHECK(error.find("63") != std::string::npos);
    CHECK_FALSE(FqdnSelector::parse_name("*.com", &error));
    CHECK(error.find("match-pattern") != std::string::npos);
    CHECK(FqdnSelector::parse_pattern("*" + label63 + ".com", &error));
}

TEST_CASE("names are lower-cased, made fully qualified, and checked")
{
    CHECK(normalize_name("Echo.K8s.Intra") == "echo.k8s.intra.");
    CHECK(normalize_name("echo.k8s.intra.") == "echo.k8s.intra.");
    CHECK(normalize_name(".") == ".");
    CHECK_FALSE(normalize_name(""));
    CHECK_FALSE(normalize_name("a..b"));
    CHECK_FALSE(normalize_name("a.b.."));
    CHECK_FALSE(normalize_name("caf\xc3\xa9.fr"));
    CHECK_FALSE(normalize_name(std::string(64, 'a') + ".com"));
    // 255 characters with the trailing dot, and one more.
    const std::string longest = label63 + "." + label63 + "." + label63 + "." + std::string(62, 'd');
    CHECK(normalize_name(longest)->size() == 255);
    CHECK_FALSE(normalize_name(longest + "d"));
}

TEST_CASE("the matcher agrees with Cilium's regexes on random names and patterns")
{
    const std::vector<std::string> labels = {"a", "b", "ab", "api-x", "k8s", "intra", "x_y", "api", "cab"};
    const std::vector<std::string> globs = {"*", "a*", "*b", "a*b", "api-*", "*a*", "k8s", "intra", "ab", "x_y"};
    std::mt19937 rng(42);
    auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };

    std::vector<FqdnSelector> selectors;
    for (int i = 0; i < 300; ++i) {
        std::string p = rng() % 4 == 0 ? "**." : "";
        const int n = 1 + static_cast<int>(rng() % 3);
        for (int j = 0; j < n; ++j)
            p += pick(globs) + (j + 1 < n ? "." : "");
        selectors.push_back(pattern(p));
    }
    selectors.push_back(pattern("*"));
    selectors.push_back(name("a.k8s.intra"));
    std::vector<std::regex> oracles;
    for (const auto& s : selectors)
        oracles.push_back(cilium_regex(s));
    const FqdnMatcher matcher(selectors);

    for (int i = 0; i < 2000; ++i) {
        std::string raw;
        const int n = 1 + static_cast<int>(rng() % 5);
        for (int j = 0; j < n; ++j)
            raw += pick(labels) + (j + 1 < n ? "." : "");
        const std::string name = *normalize_name(raw);
        auto got = matcher.match(name);
        std::sort(got.begin(), got.end());
        std::vector<FqdnMatcher::SelectorId> want;
        for (size_t id = 0; id < oracles.size(); ++id)
            if (std::regex_match(name, oracles[id]))
                want.push_back(static_cast<FqdnMatcher::SelectorId>(id));
        CAPTURE(name);
        REQUIRE(got == want);
    }
}

TEST_CASE("one matcher returns every selector that matches, each once")
{
    const std::vector<FqdnSelector> s = {
        pattern("*.k8s.intra"), pattern("**.k8s.intra"), name("echo.k8s.intra"), pattern("*"),
        pattern("e*.k8s.intra"), pattern("*o.k8s.intra"), name("other.k8s.intra"),
    };
    const FqdnMatcher m(s);
    auto got = m.match("echo.k8s.intra.");
    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<FqdnMatcher::SelectorId>{0, 1, 2, 3, 4, 5});
    got = m.match("a.b.k8s.intra.");
    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<FqdnMatcher::SelectorId>{1, 3});
    CHECK(m.match("not normalized").empty());
    CHECK(FqdnMatcher().match("echo.k8s.intra.").empty());
}
