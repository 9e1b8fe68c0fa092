package bench

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 < p ≤ 100) of samples by the
// nearest-rank method, or 0 for no samples. It does not reorder samples.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Quantiles are the p50, p99 and maximum of one set of samples.
type Quantiles struct {
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
	// Count is the number of samples.
	Count int `json:"count"`
}

// QuantilesOf returns the p50, p99 and maximum of samples.
func QuantilesOf(samples []time.Duration) Quantiles {
	return Quantiles{
		P50:   Percentile(samples, 50),
		P99:   Percentile(samples, 99),
		Max:   Percentile(samples, 100),
		Count: len(samples),
	}
}

// Spread is the median, minimum and maximum of one figure over repeated
// measurements.
type Spread struct {
	Median float64
	Min    float64
	Max    float64
	// Count is the number of measurements.
	Count int
}

// SpreadOf returns the median, minimum and maximum of values. The median
// of an even count is the mean of the two middle values.
func SpreadOf(values []float64) Spread {
	if len(values) == 0 {
		return Spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	n := len(sorted)
	median := sorted[n/2]
	if n%2 == 0 {
		median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return Spread{Median: median, Min: sorted[0], Max: sorted[n-1], Count: n}
}

// Milliseconds converts d to fractional milliseconds.
func Milliseconds(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
