import BasinFusion
import BasinUI

/// What a key (or click) asks the explorer to do. The keymap maps keys to these per view; the same action
/// (e.g. `.right`) means what the current view makes of it.
package enum ExplorerAction: Hashable, Sendable {
    // Everywhere.
    case quit, help, nextView, previousView, nextPane, previousPane, export, cancel, nextPair, previousPair
    /// Open or close the guided lesson.
    case lesson
    /// Fit the bend of a curve (Bezier or polychain) between the selected pair.
    case fit(PathType)
    /// Align every other model to A.
    case match(MatchMethod)
    // Moving; each view says what they move (the value at the cursor, the selected item).
    case up, down, pageUp, pageDown, left, right, fineLeft, fineRight, toStart, toEnd
    /// Select item n (from 1): the n-th curve in the path view, the n-th slider in the soup view.
    case select(Int)
    /// Switch to the aligned models: the aligned line in the path view, aligned ingredients in the soup view,
    /// the plane through the aligned model in the landscape view.
    case aligned
    // Path view.
    case toggleCurve, toggleAccuracy, zoom
    /// BatchNorm networks: the path view's selected curve naive / BN reset / REPAIR; the soup's BN reset on or off.
    case bnMode
    // Soup view.
    case nextMethod, previousMethod, uniformSoup, greedySoup
    // Landscape view.
    case computeLandscape, otherPlane, randomPlane
}

/// What a view adds to the explorer around the core (`ExplorerApp`: state, jobs, key routing, export, the
/// frame's tab and status bars): its key bindings and status-bar hints, what its actions and mouse events do,
/// and how it draws. A new view is a type conforming to this plus a case in `ExplorerView`.
protocol ExplorerViewModule {
    /// Binds the view's keys (in the view's context).
    static func bind(_ keymap: inout Keymap<ExplorerAction>, context: String)
    /// The actions the status bar hints at, in order.
    static var hints: [ExplorerAction] { get }
    /// Panes Tab cycles through.
    static var panes: Int { get }
    /// Performs an action bound in the view (or a global one the core leaves to the view).
    static func perform(_ action: ExplorerAction, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>]
    static func mouse(_ event: MouseEvent, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>]
    /// Called when the view becomes the current one.
    static func entered(_ app: inout ExplorerApp) -> [Effect<ExplorerMessage>]
    /// Draws the body (between the tab bar and the status bar).
    static func render(_ state: ExplorerState, into buffer: inout CellBuffer, area: Rect, context: RenderContext)
}

extension ExplorerViewModule {
    static var panes: Int { 1 }
    static func mouse(_ event: MouseEvent, in app: inout ExplorerApp) -> [Effect<ExplorerMessage>] { [] }
    static func entered(_ app: inout ExplorerApp) -> [Effect<ExplorerMessage>] { [] }
}

extension ExplorerApp {
    /// The explorer's keys: the global ones, then each view's in its context.
    package static func makeKeymap() -> Keymap<ExplorerAction> {
        var m = Keymap<ExplorerAction>()
        m.bind([.char("q"), .ctrl("c")], .quit, "quit")
        m.bind([.char("?"), .function(1)], .help, "toggle this help", hint: "help")
        m.bind([.char("v"), .function(2)], .nextView, "next view (Path, Permutation, Soup, Landscape, Task vectors)", hint: "view")
        m.bind([.char("L")], .lesson, "the guided lesson: a narrated tour, Enter or → goes on (L again closes it)", hint: "lesson")
        m.bind([.char("V")], .previousView, "previous view")
        m.bind([.tab], .nextPane, "next pane (permutation view: layers / matches)", hint: "pane")
        m.bind([.backtab], .previousPane, "previous pane")
        m.bind([.char("e")], .export, "export the model at the cursor (+ recipe)", hint: "export")
        m.bind([.char("f")], .fit(.bezier), "fit a Bezier curve between A and B (aligned B if the aligned curve is selected)", hint: "fit")
        m.bind([.char("F")], .fit(.polychain), "fit a polygonal chain (one bend) instead")
        m.bind([.char("m")], .match(.weight), "align the other models to A: weight matching", hint: "match")
        m.bind([.char("M")], .match(.activation), "align the other models to A: activation matching")
        m.bind([.char("a")], .aligned, "use the aligned models (after m): path, soup ingredients, landscape plane", hint: "aligned")
        m.bind([.esc], .cancel, "stop the running job (a fit keeps its curve so far)")
        m.bind([.char("p")], .nextPair, "next pair (or the chain through all)")
        m.bind([.char("P")], .previousPair, "previous pair")
        for view in ExplorerView.allCases { view.module.bind(&m, context: view.rawValue) }
        return m
    }
}
