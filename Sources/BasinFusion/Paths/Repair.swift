import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// REPAIR (Jordan et al. 2022, "REPAIR: REnormalizing Permuted Activations for Interpolation Repair"): the
/// pre-activation statistics of an interpolated network are rescaled, channel by channel, to the
/// interpolation of the endpoints' statistics.
///
/// Sites: every conv2d and linear node except the one giving the logits; when its only reader is a BatchNorm,
/// the BatchNorm's output instead (a BatchNorm folded into its convolution, as the reference implementations
/// fold it before tracking), so each site is what the activation after it sees. Per site and channel:
///
/// 1. Endpoint statistics (`statistics`): each model in eval mode over `data` in dataset order, batches of
///    `batchSize`; mean = the average over batches of the batch mean, std = sqrt(the average over batches of
///    the unbiased batch variance) -- what the reference's tracking BatchNorm (momentum None) records.
/// 2. Goal (`Statistics.combination`): mean and std interpolated with the point's weights,
///    (1 - t) stat_A + t stat_B on a segment, sum_i c_i(t) stat_i on a chain or curve.
/// 3. Repair pass (`apply`): a BatchNorm is inserted after every site with weight = goal std and bias = goal
///    mean (the reference's ResetLayer); its running statistics are reset and recomputed over `data` with
///    only the inserted BatchNorms in train mode (the network's own BatchNorms keep their running statistics),
///    so each site is renormalised with the earlier sites already repaired. In eval mode the inserted layer is
///    the affine map y = (x - mean) / sqrt(var + 1e-5) * goal_std + goal_mean per channel.
/// 4. `fold` absorbs that map into the site's BatchNorm (weight and bias) or its conv/linear (weight rows and
///    bias), giving a parameter set with the model's own names (for writing); `repairedNetwork` evaluates the
///    unfolded form directly.
///
/// Usage (`basin path --repair`, the explorer):
///
///     let repair = try Repair(network: model.network, like: a, data: train)   // batch 64
///     let goal = Repair.Statistics.combination([(repair.statistics(a), 0.5), (repair.statistics(b), 0.5)])
///     let p = repair.apply(ParameterSet.lerp(a, b, 0.5), goal: goal)        // for repair.repairedNetwork
///     let written = try repair.fold(p)                                      // the model's own tensors
public struct Repair: Sendable {
    /// A place whose per-channel output statistics are repaired.
    public struct Site: Sendable, Equatable {
        /// The node in the original graph whose output is renormalised.
        public let node: Int
        public let name: String
        public let channels: Int
        /// The inserted BatchNorm's node in `repairedNetwork`.
        public let insertedNode: Int
        /// The inserted BatchNorm's tensors.
        public let weight: String, bias: String, runningMean: String, runningVar: String
    }

    /// Per-site, per-channel means and standard deviations.
    public struct Statistics: Sendable, Equatable {
        public var mean: [[Double]]
        public var std: [[Double]]

        /// sum_i c_i s_i for means and standard deviations alike.
        public static func combination(_ terms: [(Statistics, Double)]) -> Statistics {
            precondition(!terms.isEmpty, "combination of no statistics")
            var out = terms[0].0
            for k in out.mean.indices {
                for ch in out.mean[k].indices {
                    var m = 0.0, s = 0.0
                    for (st, c) in terms {
                        m += c * st.mean[k][ch]
                        s += c * st.std[k][ch]
                    }
                    out.mean[k][ch] = m
                    out.std[k][ch] = s
                }
            }
            return out
        }
    }

    public static let eps = 1e-5

    public let network: Network
    public let data: Dataset
    public let batchSize: Int
    public let sites: [Site]
    /// The network with a BatchNorm after every site (evaluate `apply`'s parameters with it).
    public let repairedNetwork: Network

    /// Finds the sites of `network` (shapes from `like`, a parameter set of the model). Throws `noRepairSites`
    /// when there are none, `emptyData` when `data` has no rows.
    public init(network: Network, like params: ParameterSet, data: Dataset, batchSize: Int = 64, model: String? = nil) throws {
        guard batchSize >= 1 else {
            throw PointCorrectionError(.invalidArgument, "the REPAIR batch size must be positive (got \(batchSize))")
        }
        guard data.count > 0 else {
            throw PointCorrectionError(.emptyData, file: data.name, "has no rows to measure REPAIR statistics on")
        }
        let arch = network.architecture
        let shapes = try arch.inferShapes(shapeOf: { params[$0]?.shape }, input: arch.inputShape, source: model ?? "model")
        let readers = arch.readers
        var chosen: [(node: Int, channels: Int)] = []
        for (i, node) in arch.nodes.enumerated() where node.op is Conv2d || node.op is Linear {
            var site = i
            if readers[i].count == 1, arch.nodes[readers[i][0]].op is BatchNorm { site = readers[i][0] }
            // The logits are never renormalised; [C] and [C, H, W] outputs have their channels first.
            guard site != arch.output, i != arch.output, let shape = shapes[site], shape.count == 1 || shape.count == 3,
                  let c = shape[0] else { continue }
            chosen.append((site, c))
        }
        guard !chosen.isEmpty else {
            throw PointCorrectionError(.noRepairSites, file: model,
                                       "the network has no conv2d or linear layer before its output whose channels REPAIR could renormalise")
        }
        // The graph with a BatchNorm (momentum None, no num_batches_tracked) after every site.
        let siteOf = Dictionary(uniqueKeysWithValues: chosen.enumerated().map { ($0.element.node, $0.offset) })
        var nodes: [Node] = []
        var map = [Int](repeating: 0, count: arch.nodes.count)
        var sites: [Site] = []
        for (i, original) in arch.nodes.enumerated() {
            var node = original
            node.inputs = node.inputs.map { $0 < 0 ? $0 : map[$0] }
            nodes.append(node)
            map[i] = nodes.count - 1
            guard let k = siteOf[i] else { continue }
            let prefix = "basin.repair.\(k)."
            let bn = BatchNorm(weight: prefix + "weight", bias: prefix + "bias", runningMean: prefix + "running_mean",
                               runningVar: prefix + "running_var", numBatchesTracked: nil, eps: Repair.eps, momentum: nil,
                               numFeatures: chosen[k].channels, typeName: shapes[i]?.count == 1 ? "batchnorm1d" : "batchnorm2d")
            nodes.append(Node(name: original.name + ".repair", op: bn, inputs: [nodes.count - 1]))
            map[i] = nodes.count - 1
            sites.append(Site(node: i, name: original.name, channels: chosen[k].channels, insertedNode: nodes.count - 1,
                              weight: prefix + "weight", bias: prefix + "bias", runningMean: prefix + "running_mean",
                              runningVar: prefix + "running_var"))
        }
        self.network = network
        self.data = data
        self.batchSize = batchSize
        self.sites = sites
        repairedNetwork = Network(Architecture(nodes: nodes, output: map[arch.output], inputShape: arch.inputShape))
    }

    private func batches() -> [Range<Int>] {
        stride(from: 0, to: data.count, by: batchSize).map { $0..<min(data.count, $0 + batchSize) }
    }

    /// Per-channel mean and unbiased variance of a [N, C, ...] batch, in double precision.
    static func moments(_ y: Tensor) -> (mean: [Double], variance: [Double]) {
        let (mean, squares) = BatchNorm.channelMoments(y, channels: y.shape[1])
        let count = y.count / max(1, y.shape[1])
        return (mean, squares.map { count > 1 ? $0 / Double(count - 1) : 0 })
    }

    /// The sites' statistics in the network given by `params` (eval mode), as step 1 describes.
    public func statistics(_ params: ParameterSet) -> Statistics {
        let nodes = Set(sites.map(\.node))
        var mean = sites.map { [Double](repeating: 0, count: $0.channels) }
        var variance = mean
        let ranges = batches()
        for r in ranges {
            let trace = network.run(data.x.rows(r), params, Network.RunOptions(expose: nodes, targets: nodes))
            for (k, site) in sites.enumerated() {
                let (m, v) = Repair.moments(trace.outputs[site.node]!)
                for ch in 0..<site.channels {
                    mean[k][ch] += m[ch]
                    variance[k][ch] += v[ch]
                }
            }
        }
        let b = Double(ranges.count)
        return Statistics(mean: mean.map { $0.map { $0 / b } }, std: variance.map { $0.map { ($0 / b).squareRoot() } })
    }

    /// `params` plus the inserted BatchNorms' tensors after the repair pass (step 3), for `repairedNetwork`.
    public func apply(_ params: ParameterSet, goal: Statistics) -> ParameterSet {
        var p = params
        for (k, site) in sites.enumerated() {
            p[site.weight] = Tensor(shape: [site.channels], storage: goal.std[k].map { Float($0) })
            p[site.bias] = Tensor(shape: [site.channels], storage: goal.mean[k].map { Float($0) })
            p[site.runningMean] = Tensor(shape: [site.channels], repeating: 0)
            p[site.runningVar] = Tensor(shape: [site.channels], repeating: 1)
        }
        let inserted = Set(sites.map(\.insertedNode))
        let statistics = Set(sites.flatMap { [$0.runningMean, $0.runningVar] })
        var sums: [String: [Double]] = [:]
        let ranges = batches()
        for r in ranges {
            // With no batches tracked, each inserted BatchNorm reports its batch's own mean and unbiased variance.
            let trace = repairedNetwork.run(data.x.rows(r), p, Network.RunOptions(mode: .train, cumulativeStatistics: true,
                                                                                   trainNodes: inserted))
            for (name, t) in trace.bufferUpdates where statistics.contains(name) {
                if sums[name] == nil { sums[name] = [Double](repeating: 0, count: t.count) }
                for j in 0..<t.count { sums[name]![j] += Double(t[j]) }
            }
        }
        for (name, s) in sums { p[name] = Tensor(shape: [s.count], storage: s.map { Float($0 / Double(ranges.count)) }) }
        return p
    }

    /// Repairs `params` towards the combination of the `endpoints`' statistics (weights summing to 1).
    public func repair(_ params: ParameterSet, endpoints: [(ParameterSet, Double)]) -> ParameterSet {
        apply(params, goal: .combination(endpoints.map { (statistics($0.0), $0.1) }))
    }

    /// The repaired point with the model's own tensor names: each inserted BatchNorm's affine map absorbed by
    /// the site's BatchNorm (weight and bias scaled) or conv/linear (weight rows scaled, bias mapped).
    /// Throws `cannotFold` when a site has no bias (or BatchNorm affine parameters) to take the shift, or its
    /// tensors are shared with another node.
    public func fold(_ repaired: ParameterSet, model: String? = nil) throws -> ParameterSet {
        let arch = network.architecture
        var uses: [String: Int] = [:]
        for node in arch.nodes { for n in Set(node.op.parameterNames) { uses[n, default: 0] += 1 } }
        var out = repaired
        for site in sites {
            let w = repaired[site.weight]!, b = repaired[site.bias]!, rm = repaired[site.runningMean]!, rv = repaired[site.runningVar]!
            var scale = [Float](repeating: 0, count: site.channels), shift = scale
            for ch in 0..<site.channels {
                let a = Double(w[ch]) / (Double(rv[ch]) + Repair.eps).squareRoot()
                scale[ch] = Float(a)
                shift[ch] = Float(Double(b[ch]) - Double(rm[ch]) * a)
            }
            let op = arch.nodes[site.node].op
            let (weightName, biasName): (String?, String?)
            if let bn = op as? BatchNorm {
                (weightName, biasName) = (bn.weight, bn.bias)
            } else if let conv = op as? Conv2d {
                (weightName, biasName) = (conv.weight, conv.bias)
            } else if let linear = op as? Linear {
                (weightName, biasName) = (linear.weight, linear.bias)
            } else {
                (weightName, biasName) = (nil, nil)
            }
            guard let weightName, let biasName else {
                throw PointCorrectionError(.cannotFold, file: model, node: site.name,
                                           "has no \(op is BatchNorm ? "affine weight and bias" : "bias") to absorb the REPAIR correction, so the repaired point cannot be written with the model's tensors")
            }
            for name in [weightName, biasName] where uses[name, default: 0] > 1 {
                throw PointCorrectionError(.cannotFold, file: model, node: site.name, tensor: name,
                                           "is shared with another node, so the REPAIR correction of this node cannot be folded into it")
            }
            var weight = out[weightName]!
            let inner = weight.count / max(1, site.channels)
            weight.withUnsafeMutableBufferPointer { v in
                for ch in 0..<site.channels { for j in 0..<inner { v[ch * inner + j] *= scale[ch] } }
            }
            var bias = out[biasName]!
            bias.withUnsafeMutableBufferPointer { v in
                for ch in 0..<site.channels { v[ch] = v[ch] * scale[ch] + shift[ch] }
            }
            out[weightName] = weight
            out[biasName] = bias
            for n in [site.weight, site.bias, site.runningMean, site.runningVar] { out[n] = nil }
        }
        return out
    }
}
