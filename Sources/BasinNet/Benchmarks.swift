import BasinIO
import BasinTensor
import Foundation

/// Figures for `basin bench`: measured, never asserted (the machines are noisy).
public enum Benchmarks {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Best time of `repeats` runs of `body` after one warm-up.
    public static func bestTime(repeats: Int = 5, _ body: () -> Void) -> Double {
        body()
        var best = Double.infinity
        for _ in 0..<max(1, repeats) {
            let t0 = now()
            body()
            best = min(best, now() - t0)
        }
        return best
    }

    public struct SgemmFigure: Codable, Sendable {
        public var n: Int
        public var seconds: Double
        public var gflops: Double
    }

    /// The machine's large-square sgemm rate (C = A B, n x n, best of several runs).
    public static func sgemmRate(n: Int = 2048, repeats: Int = 5) -> SgemmFigure {
        var g = SeededGenerator(seed: 1)
        let a = Tensor(shape: [n, n], storage: (0..<(n * n)).map { _ in g.uniform(-1, 1) })
        let b = Tensor(shape: [n, n], storage: (0..<(n * n)).map { _ in g.uniform(-1, 1) })
        var c = Tensor.zeros([n, n])
        let t = bestTime(repeats: repeats) {
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        BLAS.sgemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: ap.baseAddress!, lda: n,
                                   b: bp.baseAddress!, ldb: n, beta: 0, c: cp.baseAddress!, ldc: n)
                    }
                }
            }
        }
        let flops = 2.0 * Double(n) * Double(n) * Double(n)
        return SgemmFigure(n: n, seconds: t, gflops: flops / t / 1e9)
    }

    /// A randomly initialised MLP of the given sizes and `samples` synthetic inputs with random labels.
    public static func syntheticMLP(sizes: [Int], samples: Int, seed: UInt64 = 7) -> (Network, ParameterSet, Dataset) {
        var g = SeededGenerator(seed: seed)
        let layers = (0..<(sizes.count - 1)).map { (weight: "layers.\($0).weight", bias: Optional("layers.\($0).bias")) }
        let arch = Architecture.mlp(layers: layers, activation: .relu)
        let params = Trainer.initialise(arch, sizes: sizes, generator: &g)
        let x = Tensor(shape: [samples, sizes[0]], storage: (0..<(samples * sizes[0])).map { _ in g.uniform(0, 1) })
        let y = (0..<samples).map { _ in Int32(g.next() % UInt64(sizes.last!)) }
        return (Network(arch), params, Dataset(x: x, y: y, name: "synthetic"))
    }

    /// FLOPs of one forward pass of an MLP per sample (2 per multiply-add).
    public static func mlpFlopsPerSample(_ sizes: [Int]) -> Double {
        zip(sizes, sizes.dropFirst()).reduce(0) { $0 + 2 * Double($1.0) * Double($1.1) }
    }

    public struct EvalFigure: Codable, Sendable {
        public var sizes: [Int]
        public var samples: Int
        public var batchSize: Int
        public var seconds: Double
        public var samplesPerSecond: Double
        public var gflops: Double
        /// Time of the same matrix products alone (sgemm calls on the same shapes), the bound evaluation can reach.
        public var sgemmOnlySeconds: Double
    }

    /// Evaluation throughput (forward + loss + accuracy) of an MLP on synthetic data.
    public static func evalThroughput(sizes: [Int] = [784, 512, 512, 10], samples: Int = 10_000,
                                      batchSize: Int = 2048, repeats: Int = 5) -> EvalFigure {
        let (net, params, data) = syntheticMLP(sizes: sizes, samples: samples)
        let t = bestTime(repeats: repeats) { _ = net.evaluate(params, on: data, batchSize: batchSize) }
        let flops = mlpFlopsPerSample(sizes) * Double(samples)
        let rows = min(batchSize, samples)
        var buffers = sizes.map { Tensor.zeros([rows, $0]) }
        let weights = zip(sizes, sizes.dropFirst()).map { Tensor(shape: [$0.1, $0.0], repeating: 0.01) }
        let gemmOnly = bestTime(repeats: repeats) {
            var done = 0
            while done < samples {
                let m = min(rows, samples - done)
                for l in 0..<weights.count {
                    let (k, n) = (sizes[l], sizes[l + 1])
                    let input = buffers[l]
                    input.withUnsafeBufferPointer { a in
                        weights[l].withUnsafeBufferPointer { w in
                            buffers[l + 1].withUnsafeMutableBufferPointer { c in
                                BLAS.sgemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a.baseAddress!, lda: k,
                                           b: w.baseAddress!, ldb: k, beta: 1, c: c.baseAddress!, ldc: n)
                            }
                        }
                    }
                }
                done += m
            }
        }
        return EvalFigure(sizes: sizes, samples: samples, batchSize: batchSize, seconds: t,
                          samplesPerSecond: Double(samples) / t, gflops: flops / t / 1e9, sgemmOnlySeconds: gemmOnly)
    }
}
