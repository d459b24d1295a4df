package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// scaleFailed is how many failed tasks each of the 100 projects holds in the scale part: the
// same in every table size, so that the measured query returns the same page (the same bytes)
// whether the table holds 1,000 or 1,000,000 tasks, and only the table size differs.
const scaleFailed = 10

// scale measures part 3: GET /failed-tasks?limit=1000 with each table size, per engine. Each
// run restarts the service: its first answer comes from the database (no cache can hold it
// yet), the following ones are what clients see under wrk.
func (b *bench) scale(ctx context.Context) ([]ScaleRow, error) {
	var rows []ScaleRow
	for _, engine := range b.cfg.Engines {
		for _, size := range b.cfg.ScaleSizes {
			s, err := b.seededService(ctx, engine, size, 100, scaleFailed)
			if err != nil {
				return nil, err
			}
			row := ScaleRow{Engine: engine, Tasks: size, Seed: stat([]float64{s.seedTime.Seconds()})}
			err = b.scaleRuns(ctx, s, &row)
			s.Stop()
			if err != nil {
				return nil, err
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

func (b *bench) scaleRuns(ctx context.Context, s *seeded, row *ScaleRow) error {
	var first, seq, rps, p50, p99 []float64
	useWrk := !b.cfg.SkipWrk && b.ensureTool("wrk", "wrk")
	for run := range b.cfg.Runs {
		if run > 0 {
			if err := s.restart(ctx, b); err != nil {
				return err
			}
		}
		path := fmt.Sprintf("/v3/%s/failed-tasks?limit=1000", s.project)
		start := time.Now()
		body, _, err := s.get(ctx, path)
		if err != nil {
			return err
		}
		first = append(first, ms(time.Since(start)))
		if !strings.Contains(string(body), fmt.Sprintf(`"total":%d`, min(scaleFailed, row.Tasks/100))) {
			return fmt.Errorf("%s: unexpected answer %.200s", path, body)
		}
		// Sequential requests on one connection: the latency of one client.
		var lat []float64
		for range 50 {
			start := time.Now()
			if _, _, err := s.get(ctx, path); err != nil {
				return err
			}
			lat = append(lat, ms(time.Since(start)))
		}
		seq = append(seq, stat(lat).Median)
		if useWrk {
			r, err := b.wrk(ctx, s.base+path, s.token, b.cfg.Conns[0])
			if err != nil {
				return err
			}
			rps, p50, p99 = append(rps, r.rps), append(p50, r.p50), append(p99, r.p99)
		}
	}
	row.First, row.Seq, row.RPS, row.P50, row.P99 = stat(first), stat(seq), stat(rps), stat(p50), stat(p99)
	b.logf("scale %s %d tasks: first %.2f ms, sequential %.2f ms, %.0f req/s, p50 %.2f ms", row.Engine, row.Tasks,
		row.First.Median, row.Seq.Median, row.RPS.Median, row.P50.Median)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
