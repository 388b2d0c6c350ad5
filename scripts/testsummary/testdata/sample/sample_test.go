package sample

import "testing"

// The tests TestRunGoTest runs through testsummary: one of each outcome.

func TestPass(t *testing.T) { t.Log("a passing test's log is not shown") }

func TestFail(t *testing.T) { t.Error("boom: the failure message") }

func TestSkip(t *testing.T) { t.Skip("needs a tool that is not installed") }

func TestSub(t *testing.T) {
	t.Run("skipped", func(t *testing.T) { t.Skipf("subtest skipped for %s", "a reason") })
	t.Run("passes", func(t *testing.T) {})
}
