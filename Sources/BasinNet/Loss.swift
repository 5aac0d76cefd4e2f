import BasinIO
import BasinTensor
import Foundation

/// Loss and accuracy of a model on a data set.
public struct Metrics: Sendable, Codable, Equatable {
    /// Mean softmax cross-entropy (natural log) over the scored positions (one per sample for class labels;
    /// the positions whose label is not -100 for token labels).
    public var loss: Double
    /// Fraction of scored positions whose argmax logit is the label.
    public var accuracy: Double
    public var samples: Int

    public init(loss: Double, accuracy: Double, samples: Int) {
        self.loss = loss
        self.accuracy = accuracy
        self.samples = samples
    }

    public var error: Double { 1 - accuracy }
}

extension Network {
    /// The label of a position that is not scored (Hugging Face's convention).
    public static let ignoredLabel: Int32 = -100

    /// Softmax cross-entropy over the last axis of `logits` ([N, C] with labels [N], or [N, L, C] with
    /// labels [N, L] flattened; label -100 is not scored): the sum of the losses, the number of argmax hits,
    /// the number of scored positions, and (optionally) the gradient of the *mean* loss over `normaliser`
    /// positions (default: the scored ones) with respect to the logits.
    public static func crossEntropy(_ logits: Tensor, labels: ArraySlice<Int32>, normaliser: Int? = nil,
                                    wantGradient: Bool = false) -> (lossSum: Double, correct: Int, count: Int, gradient: Tensor?) {
        let c = logits.shape.last ?? 1
        let n = c == 0 ? 0 : logits.count / c
        precondition(labels.count == n, "\(labels.count) labels for \(n) rows of logits \(logits.shape)")
        let scored = labels.reduce(0) { $0 + ($1 == ignoredLabel ? 0 : 1) }
        var lossSum = 0.0
        var correct = 0
        var grad: Tensor? = wantGradient ? Tensor.zeros(logits.shape) : nil
        let scale = 1.0 / Double(max(1, normaliser ?? scored))
        logits.withUnsafeBufferPointer { z in
            var g = grad?.storage ?? []
            g.withUnsafeMutableBufferPointer { gs in
                for r in 0..<n {
                    let label = Int(labels[labels.startIndex + r])
                    if label == Int(ignoredLabel) { continue }
                    let row = z.baseAddress! + r * c
                    var best = 0
                    var m = row[0]
                    for j in 1..<c where row[j] > m {
                        m = row[j]
                        best = j
                    }
                    if best == label { correct += 1 }
                    var s = 0.0
                    for j in 0..<c { s += Foundation.exp(Double(row[j] - m)) }
                    let lse = Double(m) + Foundation.log(s)
                    let target = label >= 0 && label < c ? Double(row[label]) : Double.nan
                    lossSum += lse - target
                    if wantGradient {
                        let gr = gs.baseAddress! + r * c
                        for j in 0..<c {
                            let p = Foundation.exp(Double(row[j]) - lse)
                            gr[j] = Float((p - (j == label ? 1 : 0)) * scale)
                        }
                    }
                }
            }
            if wantGradient { grad = Tensor(shape: logits.shape, storage: g) }
        }
        return (lossSum, correct, scored, grad)
    }

    // MARK: Evaluation

    /// Loss and accuracy over a whole data set, in batches (eval mode).
    public func evaluate(_ params: ParameterSet, on data: Dataset, batchSize: Int = 1024) -> Metrics {
        evaluate(on: data, batchSize: batchSize) { batch, _ in logits(batch, params) }
    }

    /// Evaluation with a custom way to produce each batch's logits (used by path evaluation and ensembles).
    public func evaluate(on data: Dataset, batchSize: Int = 1024, logits: (Tensor, Range<Int>) -> Tensor) -> Metrics {
        var lossSum = 0.0
        var correct = 0
        var scored = 0
        var start = 0
        let batchSize = max(1, batchSize)
        while start < data.count {
            let end = min(data.count, start + batchSize)
            let batch = start == 0 && end == data.count ? data.x : data.x.rows(start..<end)
            let z = logits(batch, start..<end)
            let r = Network.crossEntropy(z, labels: data.labels(start..<end))
            lossSum += r.lossSum
            correct += r.correct
            scored += r.count
            start = end
        }
        let n = max(1, scored)
        return Metrics(loss: lossSum / Double(n), accuracy: Double(correct) / Double(n), samples: data.count)
    }
}
