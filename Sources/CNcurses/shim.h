// ncursesw behind one header. SwiftPM drops pkg-config -D flags, so the wide-char
// API is switched on here. Everything Swift can't see (macros, globals behind
// macros) gets a static inline wrapper prefixed `basin_`.
#ifndef BASIN_CNCURSES_SHIM_H
#define BASIN_CNCURSES_SHIM_H
#ifndef NCURSES_WIDECHAR
#define NCURSES_WIDECHAR 1
#endif
#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <locale.h>
#include <langinfo.h>
#include <signal.h>
#include <unistd.h>
#include <string.h>
#include <wchar.h>
#include <ncursesw/ncurses.h>

static inline WINDOW *basin_stdscr(void) { return stdscr; }
static inline int basin_lines(void) { return LINES; }
static inline int basin_cols(void) { return COLS; }
static inline int basin_colors(void) { return COLORS; }
static inline int basin_color_pairs(void) { return COLOR_PAIRS; }
static inline int basin_err(void) { return ERR; }
static inline int basin_ok(void) { return OK; }

static inline attr_t basin_a_normal(void) { return A_NORMAL; }
static inline attr_t basin_a_bold(void) { return A_BOLD; }
static inline attr_t basin_a_dim(void) { return A_DIM; }
static inline attr_t basin_a_reverse(void) { return A_REVERSE; }
static inline attr_t basin_a_underline(void) { return A_UNDERLINE; }
static inline attr_t basin_color_pair(int n) { return COLOR_PAIR(n); }

// Key codes.
static inline int basin_key_up(void) { return KEY_UP; }
static inline int basin_key_down(void) { return KEY_DOWN; }
static inline int basin_key_left(void) { return KEY_LEFT; }
static inline int basin_key_right(void) { return KEY_RIGHT; }
static inline int basin_key_sleft(void) { return KEY_SLEFT; }
static inline int basin_key_sright(void) { return KEY_SRIGHT; }
static inline int basin_key_home(void) { return KEY_HOME; }
static inline int basin_key_end(void) { return KEY_END; }
static inline int basin_key_ppage(void) { return KEY_PPAGE; }
static inline int basin_key_npage(void) { return KEY_NPAGE; }
static inline int basin_key_backspace(void) { return KEY_BACKSPACE; }
static inline int basin_key_dc(void) { return KEY_DC; }
static inline int basin_key_enter(void) { return KEY_ENTER; }
static inline int basin_key_btab(void) { return KEY_BTAB; }
static inline int basin_key_resize(void) { return KEY_RESIZE; }
static inline int basin_key_mouse(void) { return KEY_MOUSE; }
static inline int basin_key_f(int n) { return KEY_F(n); }
static inline int basin_key_code_yes(void) { return KEY_CODE_YES; }

// Mouse.
static inline mmask_t basin_button1_pressed(void) { return BUTTON1_PRESSED; }
static inline mmask_t basin_button1_clicked(void) { return BUTTON1_CLICKED; }
static inline mmask_t basin_button1_released(void) { return BUTTON1_RELEASED; }
static inline mmask_t basin_button4_pressed(void) { return BUTTON4_PRESSED; }
static inline mmask_t basin_button5_pressed(void) {
#ifdef BUTTON5_PRESSED
    return BUTTON5_PRESSED;
#else
    return 0;
#endif
}
static inline mmask_t basin_report_mouse_position(void) { return REPORT_MOUSE_POSITION; }
static inline mmask_t basin_all_mouse_events(void) { return ALL_MOUSE_EVENTS; }
/// Reads the pending mouse event: returns OK and fills x, y, bstate, or ERR.
static inline int basin_getmouse(int *x, int *y, mmask_t *bstate) {
    MEVENT ev;
    memset(&ev, 0, sizeof ev);
    int rc = getmouse(&ev);
    if (rc == OK) { *x = ev.x; *y = ev.y; *bstate = ev.bstate; }
    return rc;
}

/// Writes one wide character with attributes and colour pair at (y, x).
static inline int basin_put_wch(int y, int x, const wchar_t *wcs, attr_t attrs, short pair) {
    cchar_t cc;
    memset(&cc, 0, sizeof cc);
    if (setcchar(&cc, wcs, attrs, pair, NULL) != OK) return ERR;
    return mvadd_wch(y, x, &cc);
}

static inline int basin_get_wch(wint_t *ch) { return get_wch(ch); }

/// True when the current locale's codeset is UTF-8 (call after setlocale).
static inline int basin_locale_is_utf8(void) {
    const char *cs = nl_langinfo(CODESET);
    if (!cs) return 0;
    return strcmp(cs, "UTF-8") == 0 || strcmp(cs, "utf8") == 0 || strcmp(cs, "UTF8") == 0;
}

/// SGR mouse reports (1006) with button-event tracking (1002: presses, releases and motion while a button is
/// held, for dragging), asked of the terminal directly: ncurses' own mouse support follows terminfo, which for
/// tmux and screen is the old X10 form (no releases beyond column 223, no drags).
static const char basin_mouse_on_seq[] = "\033[?1002h\033[?1006h";
static const char basin_mouse_off_seq[] = "\033[?1006l\033[?1002l";
static inline void basin_mouse_on(void) { (void)!write(STDOUT_FILENO, basin_mouse_on_seq, sizeof basin_mouse_on_seq - 1); }
static inline void basin_mouse_off(void) { (void)!write(STDOUT_FILENO, basin_mouse_off_seq, sizeof basin_mouse_off_seq - 1); }
/// The key code ncurses returns for the start of an SGR mouse report (ESC [ <); the rest is read as characters.
static inline int basin_key_sgr_mouse(void) { return KEY_MAX + 1; }
static inline void basin_define_sgr_mouse_key(void) {
    define_key("\033[<", 0);
    define_key("\033[<", KEY_MAX + 1);
}

/// Blanks the screen (alternate screen included) before endwin. tmux, when the window grew while the
/// alternate screen was on, shrinks it back to the saved size on leaving it: with the cursor on the last row
/// (where endwin puts it) the rows above are pushed into the history and then pulled back into the shell's
/// screen. Blank rows are dropped instead, so nothing of the UI is left behind.
static inline void basin_clear_before_exit(void) {
    werase(stdscr);
    wmove(stdscr, 0, 0);
    wrefresh(stdscr);
}

/// Async-signal-tolerant restore for fatal/termination signals: endwin() is not
/// strictly async-signal-safe, but it is what ncurses itself does in its own
/// handlers. The signal then goes on to the handler installed before the
/// explorer's (BasinIO's, which removes unfinished outputs and names a mapped
/// file that shrank; see docs/reliability.md), or the default action: a fault
/// (SIGSEGV, SIGBUS, ... raised by the hardware) by returning, so the faulting
/// instruction runs again under that handler with its address; anything sent
/// (kill, raise, abort) by raising it again.
static volatile sig_atomic_t basin_curses_active = 0;
static inline struct sigaction *basin_previous_action(int sig) {
    static struct sigaction actions[65];
    return &actions[sig > 0 && sig < 65 ? sig : 0];
}
static inline void basin_signal_restore(int sig, siginfo_t *info, void *context) {
    (void)context;
    if (basin_curses_active) { basin_curses_active = 0; basin_mouse_off(); basin_clear_before_exit(); endwin(); }
    if (sig > 0 && sig < 65) sigaction(sig, basin_previous_action(sig), NULL); else signal(sig, SIG_DFL);
    if (info && info->si_code > 0 && (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE)) return;
    raise(sig);
}
static inline void basin_install_signal_handlers(void) {
    basin_curses_active = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = basin_signal_restore;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    int signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE,
#ifdef SIGTRAP
                     SIGTRAP,
#endif
    };
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        sigaction(signals[i], &sa, signals[i] < 65 ? basin_previous_action(signals[i]) : NULL);
    }
}
static inline void basin_mark_curses_inactive(void) { basin_curses_active = 0; }
#endif
