// A client_golang app for the real-world tests: one histogram with classic
// and native buckets, one native-only histogram, a labelled counter and a
// summary, served on 127.0.0.1:<port>/metrics (port from argv[1]) in every
// format client_golang speaks (protobuf, OpenMetrics, text). The counter and
// the classic+native histogram carry exemplars (trace ids), which only
// OpenMetrics and protobuf answers hold. It observes a fixed series of
// values at start, so two scrapes of it agree. It exits by itself when its
// parent dies.
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: app <port>")
		os.Exit(2)
	}
	registry := prometheus.NewRegistry()
	both := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                        "app_request_duration_seconds",
		Help:                        "Request duration, classic and native buckets.",
		Buckets:                     []float64{0.005, 0.01, 0.05, 0.1, 0.5, 1, 5},
		NativeHistogramBucketFactor: 1.1,
	}, []string{"method"})
	native := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:                        "app_response_size_bytes",
		Help:                        "Response size, native buckets only.",
		NativeHistogramBucketFactor: 1.5,
	})
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "app_requests_total",
		Help: "Requests by \"code\".\nSecond line.",
	}, []string{"code", "container"})
	latency := prometheus.NewSummary(prometheus.SummaryOpts{
		Name:       "app_latency_seconds",
		Help:       "Latency summary.",
		Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
	})
	registry.MustRegister(both, native, requests, latency)
	for i := 1; i <= 200; i++ {
		v := float64(i) * 0.0037
		if i%40 == 0 {
			// The latest exemplar of each bucket is kept.
			both.WithLabelValues("GET").(prometheus.ExemplarObserver).ObserveWithExemplar(
				v, prometheus.Labels{"trace_id": fmt.Sprintf("%032x", i)})
		} else {
			both.WithLabelValues("GET").Observe(v)
		}
		if i%3 == 0 {
			both.WithLabelValues("POST").Observe(v * 7)
		}
		native.Observe(float64(i*i) * 13.5)
		if i%50 == 0 {
			native.Observe(-float64(i))
			native.Observe(0)
		}
		latency.Observe(v)
	}
	requests.WithLabelValues("200", "inner").(prometheus.ExemplarAdder).AddWithExemplar(
		41, prometheus.Labels{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"})
	requests.WithLabelValues("500", "").Add(2)
	// Exit when the parent (the test) is gone, even if it was killed
	// before it could kill this child.
	parent := os.Getppid()
	go func() {
		for os.Getppid() == parent {
			time.Sleep(200 * time.Millisecond)
		}
		os.Exit(0)
	}()
	http.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
