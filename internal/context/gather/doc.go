// Package gather collects an incident's context from every configured source
// in parallel (recent deployments, error log samples, PromQL snapshots), each
// source under its own timeout and all of them under one budget, and keeps
// partial results when a source fails or runs out of time.
package gather
