/* graph.c - paths from named roots, holder groups, referrers (graph.h).
 *
 * Layers: patterns; the search (roots, then breadth-first); holder
 * groups; the reverse index and climbing it.
 */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

#include "census.h"
#include "types.h"

/* Past this many patterns, new ones generalise every position, so that a
   pathological heap (an object graph with millions of distinct attribute
   names) cannot grow the table without bound. */
#define MAX_PATTERNS (1u << 22)
#define MAX_THREADS 4096
/* Frames read in all, over every thread: a damaged frame chain may loop. */
#define MAX_FRAMES 1000000
#define MAX_LOCALS 65536
/* Tuples used as records keep their positions: (key, value)[1]. */
#define TUPLE_POSITIONS_KEPT 16

/* ---- patterns ------------------------------------------------------------
 */

static uint64_t
pattern_hash(uint32_t parent, uint8_t edge, uint64_t aux, uint64_t aux2)
{
    uint64_t h = ((uint64_t)parent << 8 | edge) * 0x9E3779B97F4A7C15ULL;
    h ^= aux * 0xC2B2AE3D27D4EB4FULL;
    h ^= aux2 * 0x165667B19E3779F9ULL;
    return h ^ (h >> 29);
}

static int
pattern_matches(const cs_pattern *p, uint32_t parent, uint8_t edge,
                uint64_t aux, uint64_t aux2)
{
    return p->parent == parent && p->edge == edge && p->aux == aux
           && p->aux2 == aux2;
}

static int
grow_pattern_slots(cs_graph *g)
{
    size_t capacity = (g->pattern_mask + 1) * 2;
    uint32_t *slots = calloc(capacity, sizeof(uint32_t));
    if (slots == NULL) {
        return -1;
    }
    for (size_t id = 0; id < g->npatterns; id++) {
        const cs_pattern *p = &g->patterns[id];
        size_t i = (size_t)pattern_hash(p->parent, p->edge, p->aux, p->aux2)
                   & (capacity - 1);
        while (slots[i] != 0) {
            i = (i + 1) & (capacity - 1);
        }
        slots[i] = (uint32_t)id + 1;
    }
    free(g->pattern_slots);
    g->pattern_slots = slots;
    g->pattern_mask = capacity - 1;
    return 0;
}

/* The pattern (parent, edge, aux, aux2), created if new with `rep` as
   its representative.  CS_NONE if out of memory. */
static uint32_t
intern_pattern(cs_graph *g, uint32_t parent, uint8_t edge, uint64_t aux,
               uint64_t aux2, int general, uint32_t rep)
{
    size_t i = (size_t)pattern_hash(parent, edge, aux, aux2) & g->pattern_mask;
    for (uint32_t slot; (slot = g->pattern_slots[i]) != 0;) {
        if (pattern_matches(&g->patterns[slot - 1], parent, edge, aux, aux2)) {
            return slot - 1;
        }
        i = (i + 1) & g->pattern_mask;
    }
    if (cs_grow((void **)&g->patterns, &g->patterns_cap, g->npatterns + 1,
                sizeof(cs_pattern))
        < 0) {
        return CS_NONE;
    }
    uint32_t id = (uint32_t)g->npatterns++;
    cs_pattern *p = &g->patterns[id];
    p->parent = parent;
    p->rep = rep;
    p->aux = aux;
    p->aux2 = aux2;
    p->edge = edge;
    p->general = (uint8_t)general;
    g->pattern_slots[i] = id + 1;
    if (g->npatterns * 2 > g->pattern_mask + 1 && grow_pattern_slots(g) < 0) {
        return CS_NONE;
    }
    if (g->npatterns >= MAX_PATTERNS) {
        g->generalize_all = 1;
    }
    return id;
}

/* Does the dict whose pattern is `dict_pattern` hold names (a module's,
   a class's or an instance's namespace) rather than data? */
static int
is_namespace(const cs_graph *g, uint32_t dict_pattern)
{
    if (dict_pattern == CS_NONE) {
        return 0;
    }
    uint8_t edge = g->patterns[dict_pattern].edge;
    return edge == CS_EDGE_MODULE_DICT || edge == CS_EDGE_TYPE_DICT
           || edge == CS_EDGE_INSTANCE_DICT || edge == CS_EDGE_STATIC_TYPE;
}

/* Which part of an edge varies between siblings, and is dropped from
   the pattern: positions in lists and sets, keys of data dicts. */
static int
should_generalize(const cs_graph *g, uint32_t parent_pattern,
                  cs_kind parent_kind, cs_edge edge, uint64_t aux)
{
    switch (edge) {
    case CS_EDGE_ITEM:
        return parent_kind != CS_KIND_TUPLE || aux >= TUPLE_POSITIONS_KEPT;
    case CS_EDGE_DICT_VALUE:
        return !is_namespace(g, parent_pattern);
    case CS_EDGE_DICT_KEY:
    case CS_EDGE_SET_ITEM:
        return 1;
    case CS_EDGE_MODULE:
    case CS_EDGE_LOCAL:
    case CS_EDGE_STATIC_TYPE:
        return 0;
    default:
        return g->generalize_all;
    }
}

/* ---- the search ----------------------------------------------------------
 */

typedef struct {
    cs_scanner *s;
    cs_graph *g;
    uint32_t *queue;
    size_t queue_end;
    uint32_t from;         /* the object whose references are visited */
    uint32_t from_pattern; /* its pattern */
    cs_kind from_kind;
    uint64_t frames; /* frames read so far, at most MAX_FRAMES */
    int failed;
} search;

/* Reaches `child` by `edge` from the current object (or a root). */
static int
reach(search *sr, uint64_t child, cs_edge edge, uint64_t aux, uint64_t aux2)
{
    cs_graph *g = sr->g;
    uint32_t id = cs_idset_get(&g->index, cs_node_addrs(sr->s), child);
    if (id == CS_NONE || g->pattern[id] != CS_NONE) {
        return 0;
    }
    int general
        = should_generalize(g, sr->from_pattern, sr->from_kind, edge, aux);
    uint32_t pattern
        = intern_pattern(g, sr->from_pattern, (uint8_t)edge, general ? 0 : aux,
                         general ? 0 : aux2, general, id);
    if (pattern == CS_NONE) {
        sr->failed = 1;
        return 1;
    }
    g->pattern[id] = pattern;
    g->parent[id] = sr->from;
    sr->queue[sr->queue_end++] = id;
    g->reached++;
    return 0;
}

static int
reach_visit(void *ctx, uint64_t child, cs_edge edge, uint64_t aux,
            uint64_t aux2)
{
    return reach(ctx, child, edge, aux, aux2);
}

static int
module_root(void *ctx, uint64_t key, uint64_t value)
{
    return reach(ctx, value, CS_EDGE_MODULE, key, 0);
}

static int
modules_of(cs_scanner *s, uint64_t interp, void *ctx)
{
    uint64_t modules = cs_word(&s->image, interp + s->lay->interp_modules);
    if (modules != 0) {
        cs_dict_foreach(s, modules, module_root, ctx);
    }
    return ((search *)ctx)->failed;
}

/* The frame a thread is running: tstate->frame (3.10),
   tstate->cframe->current_frame (3.11-3.12), tstate->current_frame
   (3.13+). */
static uint64_t
top_frame(cs_scanner *s, uint64_t tstate)
{
    const cs_layout *lay = s->lay;
    uint64_t frame = cs_word(&s->image, tstate + lay->tstate_frame);
    if (lay->cframe_current_frame >= 0 && frame != 0) {
        frame = cs_word(&s->image, frame + lay->cframe_current_frame);
    }
    return frame;
}

static uint64_t
previous_frame(cs_scanner *s, uint64_t frame)
{
    const cs_layout *lay = s->lay;
    int32_t link = cs_frames_are_interpreter_frames(lay) ? lay->frame_previous
                                                         : lay->frame_back;
    return cs_word(&s->image, frame + (uint64_t)link);
}

/* The locals of one frame, as roots.  Frames not owned by a Python
   function (shims, the interpreter's own: owner 3 and above) and frames
   running something other than a code object (3.13+) have none.  From
   3.14, f_executable and the locals are tagged stack references. */
static void
frame_roots(search *sr, uint64_t frame)
{
    cs_scanner *s = sr->s;
    const cs_layout *lay = s->lay;
    uint64_t code = cs_stackref_object(
        lay, cs_word(&s->image, frame + lay->frame_code));
    cs_type *code_type = cs_type_of(s, code);
    if (code_type == NULL || code_type->kind != CS_KIND_CODE) {
        return;
    }
    if (lay->frame_owner >= 0
        && cs_u8(&s->image, frame + lay->frame_owner)
               >= CS_FRAME_OWNER_FIRST_NOT_PYTHON) {
        return;
    }
    int64_t nlocals = cs_code_nlocals(s, code);
    if (nlocals <= 0 || nlocals > MAX_LOCALS) {
        return;
    }
    const uint8_t *locals = cs_image_ptr(
        &s->image, frame + lay->frame_localsplus, (uint64_t)nlocals * 8);
    for (int64_t i = 0; locals != NULL && i < nlocals && !sr->failed; i++) {
        uint64_t value;
        memcpy(&value, locals + i * 8, 8);
        value = cs_stackref_object(lay, value);
        if (value != 0) {
            reach(sr, value, CS_EDGE_LOCAL, code, (uint64_t)i);
        }
    }
}

static int
frames_of(cs_scanner *s, uint64_t interp, void *ctx)
{
    search *sr = ctx;
    uint64_t tstate = cs_word(&s->image, interp + s->lay->interp_threads_head);
    for (int t = 0; tstate != 0 && t < MAX_THREADS; t++) {
        uint64_t frame = top_frame(s, tstate);
        while (frame != 0 && sr->frames < MAX_FRAMES) {
            frame_roots(sr, frame);
            frame = previous_frame(s, frame);
            sr->frames++;
        }
        tstate = cs_word(&s->image, tstate + s->lay->tstate_next);
    }
    return sr->failed;
}

/* The dicts of static types (int.__dict__...): nothing the census counts
   refers to a static type, so their methods and constants would look
   unreachable without this root. */
static void
static_type_roots(search *sr)
{
    cs_scanner *s = sr->s;
    for (size_t i = 0; i < s->ntypes && !sr->failed; i++) {
        const cs_type *t = s->types[i];
        if (!cs_type_is_heap(t) && t->dict != 0) {
            reach(sr, t->dict, CS_EDGE_STATIC_TYPE, t->addr, 0);
        }
    }
}

static int
run_search(cs_scanner *s, cs_graph *g)
{
    search sr = {s, g, NULL, 0, CS_ROOT, CS_NONE, CS_KIND_OTHER, 0, 0};
    sr.queue = malloc((s->nnodes + 1) * sizeof(uint32_t));
    if (sr.queue == NULL) {
        return cs_fail(s, "out of memory");
    }
    /* Roots in the order their names are preferred: a module global
       before a local, a local before a static type's attribute. */
    cs_foreach_interpreter(s, modules_of, &sr);
    cs_foreach_interpreter(s, frames_of, &sr);
    static_type_roots(&sr);
    for (size_t head = 0; head < sr.queue_end && !sr.failed; head++) {
        uint32_t id = sr.queue[head];
        cs_type *t = s->types[s->nodes[id].type];
        sr.from = id;
        sr.from_pattern = g->pattern[id];
        sr.from_kind = t->kind;
        cs_visit_referents(s, s->nodes[id].addr, t, reach_visit, &sr);
    }
    free(sr.queue);
    return sr.failed ? cs_fail(s, "out of memory") : 0;
}

/* ---- holder groups ---------------------------------------------------------
 */

static int
compare_groups(const void *a, const void *b)
{
    const cs_group *left = a;
    const cs_group *right = b;
    if (left->type != right->type) {
        return left->type < right->type ? -1 : 1;
    }
    if (left->count != right->count) {
        return left->count > right->count ? -1 : 1;
    }
    return left->pattern < right->pattern ? -1
                                          : left->pattern > right->pattern;
}

static int
count_groups(cs_scanner *s, cs_graph *g, cs_addrmap *index, size_t *cap)
{
    for (size_t i = 0; i < s->nnodes; i++) {
        const cs_node *node = &s->nodes[i];
        uint64_t key = ((uint64_t)node->type + 1) << 32 | g->pattern[i];
        uint32_t at = cs_addrmap_get(index, key);
        if (at == CS_NONE) {
            if (cs_grow((void **)&g->groups, cap, g->ngroups + 1,
                        sizeof(cs_group))
                    < 0
                || cs_addrmap_put(index, key, (uint32_t)g->ngroups) < 0) {
                return -1;
            }
            at = (uint32_t)g->ngroups++;
            g->groups[at] = (cs_group){node->type, g->pattern[i], 0, 0};
        }
        g->groups[at].count++;
        g->groups[at].bytes += node->size;
    }
    return 0;
}

static int
build_groups(cs_scanner *s, cs_graph *g)
{
    cs_addrmap index;
    size_t cap = 0;
    if (cs_addrmap_init(&index, 1024) < 0) {
        return cs_fail(s, "out of memory");
    }
    int failed = count_groups(s, g, &index, &cap);
    cs_addrmap_free(&index);
    g->type_groups = calloc(s->ntypes + 1, sizeof(uint32_t));
    if (failed < 0 || g->type_groups == NULL) {
        return cs_fail(s, "out of memory");
    }
    if (g->ngroups > 0) {
        qsort(g->groups, g->ngroups, sizeof(cs_group), compare_groups);
    }
    /* type_groups[t] .. type_groups[t + 1] are the groups of type t. */
    size_t at = 0;
    for (size_t t = 0; t <= s->ntypes; t++) {
        while (at < g->ngroups && g->groups[at].type < t) {
            at++;
        }
        g->type_groups[t] = (uint32_t)at;
    }
    return 0;
}

/* ---- building --------------------------------------------------------------
 */

static int
allocate_graph(cs_scanner *s, cs_graph *g)
{
    size_t n = s->nnodes + 1;
    g->parent = malloc(n * sizeof(uint32_t));
    g->pattern = malloc(n * sizeof(uint32_t));
    g->pattern_slots = calloc(1024, sizeof(uint32_t));
    g->pattern_mask = 1023;
    if (g->parent == NULL || g->pattern == NULL || g->pattern_slots == NULL
        || cs_idset_build(&g->index, cs_node_addrs(s), (uint32_t)s->nnodes)
               < 0) {
        return -1;
    }
    memset(g->parent, 0xff, n * sizeof(uint32_t));
    memset(g->pattern, 0xff, n * sizeof(uint32_t));
    return 0;
}

int
cs_graph_build(cs_scanner *s)
{
    if (s->graph != NULL) {
        return 0;
    }
    if (!s->census_done) {
        return cs_fail(s, "the census has not run");
    }
    cs_graph *g = calloc(1, sizeof(cs_graph));
    if (g == NULL) {
        return cs_fail(s, "out of memory");
    }
    s->graph = g;
    if (allocate_graph(s, g) < 0) {
        cs_graph_free(s);
        return cs_fail(s, "out of memory");
    }
    if (run_search(s, g) < 0 || build_groups(s, g) < 0) {
        cs_graph_free(s);
        return -1;
    }
    return 0;
}

void
cs_graph_free(cs_scanner *s)
{
    cs_graph *g = s->graph;
    if (g == NULL) {
        return;
    }
    cs_idset_free(&g->index);
    free(g->parent);
    free(g->pattern);
    free(g->patterns);
    free(g->pattern_slots);
    free(g->groups);
    free(g->type_groups);
    free(g->unreached);
    free(g->unreached_addr);
    cs_idset_free(&g->unreached_index);
    free(g->type_start);
    free(g->rev_start);
    free(g->rev);
    free(g);
    s->graph = NULL;
}

uint32_t
cs_graph_find(cs_scanner *s, uint64_t addr)
{
    if (s->graph == NULL) {
        return CS_NONE;
    }
    return cs_idset_get(&s->graph->index, cs_node_addrs(s), addr);
}

typedef struct {
    uint64_t child;
    cs_edge edge;
    uint64_t aux;
    uint64_t aux2;
} edge_search;

static int
edge_visit(void *ctx, uint64_t child, cs_edge edge, uint64_t aux,
           uint64_t aux2)
{
    edge_search *found = ctx;
    if (child != found->child) {
        return 0;
    }
    found->edge = edge;
    found->aux = aux;
    found->aux2 = aux2;
    return 1;
}

int
cs_graph_edge(cs_scanner *s, uint32_t parent, uint32_t child, cs_edge *edge,
              uint64_t *aux, uint64_t *aux2)
{
    edge_search found = {s->nodes[child].addr, CS_EDGE_NONE, 0, 0};
    const cs_node *node = &s->nodes[parent];
    if (cs_visit_referents(s, node->addr, s->types[node->type], edge_visit,
                           &found)
        != 1) {
        return -1;
    }
    *edge = found.edge;
    *aux = found.aux;
    *aux2 = found.aux2;
    return 0;
}

/* ---- unreached objects and their referrers ------------------------------ */

/* Lists the unreached objects, sorted by type (a counting sort), and
   indexes their addresses. */
static int
list_unreached(cs_scanner *s, cs_graph *g)
{
    g->type_start = calloc(s->ntypes + 2, sizeof(uint32_t));
    if (g->type_start == NULL) {
        return -1;
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        if (g->pattern[i] == CS_NONE) {
            g->type_start[s->nodes[i].type + 1]++;
            g->nunreached++;
        }
    }
    for (size_t t = 1; t <= s->ntypes + 1; t++) {
        g->type_start[t] += g->type_start[t - 1];
    }
    size_t n = g->nunreached + 1;
    g->unreached = malloc(n * sizeof(uint32_t));
    g->unreached_addr = malloc(n * sizeof(uint64_t));
    uint32_t *fill = malloc((s->ntypes + 1) * sizeof(uint32_t));
    if (g->unreached == NULL || g->unreached_addr == NULL || fill == NULL) {
        free(fill);
        return -1;
    }
    memcpy(fill, g->type_start, (s->ntypes + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < s->nnodes; i++) {
        if (g->pattern[i] == CS_NONE) {
            uint32_t at = fill[s->nodes[i].type]++;
            g->unreached[at] = (uint32_t)i;
            g->unreached_addr[at] = s->nodes[i].addr;
        }
    }
    free(fill);
    cs_addrs addrs = {(const char *)g->unreached_addr, sizeof(uint64_t)};
    return cs_idset_build(&g->unreached_index, addrs, (uint32_t)g->nunreached);
}

/* The position of object `id` in g->unreached, or CS_NONE. */
static uint32_t
unreached_position(const cs_scanner *s, const cs_graph *g, uint32_t id)
{
    cs_addrs addrs = {(const char *)g->unreached_addr, sizeof(uint64_t)};
    return cs_idset_get(&g->unreached_index, addrs, s->nodes[id].addr);
}

/* One reference into an unreached object: unreached[k] <- object from. */
typedef struct {
    uint32_t k;
    uint32_t from;
} reference;

typedef struct {
    cs_scanner *s;
    uint32_t from;
    reference *found;
    size_t count;
    size_t cap;
    int failed;
} reverse_pass;

static int
reverse_visit(void *ctx, uint64_t child, cs_edge edge, uint64_t aux,
              uint64_t aux2)
{
    reverse_pass *pass = ctx;
    const cs_graph *g = pass->s->graph;
    cs_addrs addrs = {(const char *)g->unreached_addr, sizeof(uint64_t)};
    (void)edge;
    (void)aux;
    (void)aux2;
    uint32_t k = cs_idset_get(&g->unreached_index, addrs, child);
    if (k == CS_NONE) {
        return 0;
    }
    if (pass->count >= UINT32_MAX
        || cs_grow((void **)&pass->found, &pass->cap, pass->count + 1,
                   sizeof(reference))
               < 0) {
        pass->failed = 1;
        return 1;
    }
    pass->found[pass->count].k = k;
    pass->found[pass->count].from = pass->from;
    pass->count++;
    return 0;
}

/* One pass over every reference, keeping those into unreached objects
   (few), then a counting sort of them by target into rows. */
static int
index_referrers(cs_scanner *s, cs_graph *g)
{
    reverse_pass pass = {s, 0, NULL, 0, 0, 0};
    for (size_t i = 0; i < s->nnodes && !pass.failed; i++) {
        const cs_node *node = &s->nodes[i];
        pass.from = (uint32_t)i;
        cs_visit_referents(s, node->addr, s->types[node->type], reverse_visit,
                           &pass);
    }
    size_t n = g->nunreached;
    uint32_t *start = pass.failed ? NULL : calloc(n + 2, sizeof(uint32_t));
    uint32_t *rev
        = start == NULL ? NULL : malloc((pass.count + 1) * sizeof(uint32_t));
    if (rev == NULL) {
        free(pass.found);
        free(start);
        return cs_fail(s, "out of memory");
    }
    for (size_t i = 0; i < pass.count; i++) {
        start[pass.found[i].k + 2]++;
    }
    for (size_t k = 2; k <= n + 1; k++) {
        start[k] += start[k - 1];
    }
    /* start[k + 1] is now where row k begins; filling moves it to where
       row k ends, which is where row k + 1 begins. */
    for (size_t i = 0; i < pass.count; i++) {
        rev[start[pass.found[i].k + 1]++] = pass.found[i].from;
    }
    free(pass.found);
    g->rev_start = start;
    g->rev = rev;
    return 0;
}

int
cs_graph_build_unreached(cs_scanner *s)
{
    cs_graph *g = s->graph;
    if (g == NULL) {
        return cs_fail(s, "the graph has not been built");
    }
    if (g->rev_start != NULL) {
        return 0;
    }
    if (g->unreached == NULL && list_unreached(s, g) < 0) {
        return cs_fail(s, "out of memory");
    }
    return index_referrers(s, g);
}

typedef struct {
    uint64_t target;
    uint32_t from;
    uint32_t *out;
    size_t count;
    size_t max;
} referrer_search;

static int
referrer_visit(void *ctx, uint64_t child, cs_edge edge, uint64_t aux,
               uint64_t aux2)
{
    referrer_search *search = ctx;
    (void)edge;
    (void)aux;
    (void)aux2;
    if (child != search->target) {
        return 0;
    }
    search->out[search->count++] = search->from;
    return 1; /* one edge from this referrer is enough */
}

size_t
cs_graph_referrers_of(cs_scanner *s, uint32_t id, uint32_t *out, size_t max)
{
    referrer_search search = {s->nodes[id].addr, 0, out, 0, max};
    for (size_t i = 0; i < s->nnodes && search.count < max; i++) {
        const cs_node *node = &s->nodes[i];
        search.from = (uint32_t)i;
        cs_visit_referents(s, node->addr, s->types[node->type], referrer_visit,
                           &search);
    }
    return search.count;
}

/* A referrer of unreached object `id` that is not `id` itself, or
   CS_NONE; one the search reached is preferred, since from there the path
   has names. */
static uint32_t
best_referrer(const cs_scanner *s, const cs_graph *g, uint32_t id)
{
    uint32_t k = unreached_position(s, g, id);
    uint32_t fallback = CS_NONE;
    if (k == CS_NONE) {
        return CS_NONE;
    }
    for (uint32_t i = g->rev_start[k]; i < g->rev_start[k + 1]; i++) {
        uint32_t referrer = g->rev[i];
        if (referrer == id) {
            continue;
        }
        if (g->pattern[referrer] != CS_NONE) {
            return referrer;
        }
        if (fallback == CS_NONE) {
            fallback = referrer;
        }
    }
    return fallback;
}

size_t
cs_graph_climb(cs_scanner *s, uint32_t start, uint32_t *chain, size_t max,
               cs_chain_end *end)
{
    const cs_graph *g = s->graph;
    size_t length = 0;
    uint32_t id = start;
    *end = CS_END_TOO_DEEP;
    while (length < max) {
        chain[length++] = id;
        if (g->pattern[id] != CS_NONE) {
            *end = CS_END_REACHED;
            break;
        }
        uint32_t next = best_referrer(s, g, id);
        if (next == CS_NONE) {
            *end = CS_END_NO_REFERRER;
            break;
        }
        for (size_t i = 0; i < length; i++) {
            if (chain[i] == next) {
                *end = CS_END_CYCLE;
                return length;
            }
        }
        id = next;
    }
    return length;
}

/* ---- unreached objects, grouped by how they are held -------------------- */

/* The signature of one unreached object: how the climb from it ended,
   the type of its first referrer, and where the climb ended. */
static uint64_t
unreached_key(cs_scanner *s, uint32_t id, cs_unreached_group *group)
{
    uint32_t chain[CS_MAX_CLIMB];
    size_t length = cs_graph_climb(s, id, chain, CS_MAX_CLIMB, &group->end);
    uint32_t top = chain[length - 1];
    group->first_type = length > 1 ? s->nodes[chain[1]].type : CS_NONE;
    group->last = group->end == CS_END_REACHED ? s->graph->pattern[top]
                                               : s->nodes[top].type;
    group->rep = id;
    return ((uint64_t)group->end << 62) ^ ((uint64_t)group->first_type << 32)
           ^ group->last ^ 1;
}

static int
compare_unreached(const void *a, const void *b)
{
    const cs_unreached_group *left = a;
    const cs_unreached_group *right = b;
    if (left->count != right->count) {
        return left->count > right->count ? -1 : 1;
    }
    return 0;
}

int
cs_graph_group_unreached(cs_scanner *s, uint32_t type,
                         cs_unreached_group **groups, size_t *ngroups)
{
    const cs_graph *g = s->graph;
    cs_addrmap index;
    size_t cap = 0;
    if (cs_addrmap_init(&index, 64) < 0) {
        return -1;
    }
    for (uint32_t k = g->type_start[type]; k < g->type_start[type + 1]; k++) {
        uint32_t id = g->unreached[k];
        cs_unreached_group probe;
        uint64_t key = unreached_key(s, id, &probe);
        uint32_t at = cs_addrmap_get(&index, key);
        if (at == CS_NONE) {
            if (cs_grow((void **)groups, &cap, *ngroups + 1,
                        sizeof(cs_unreached_group))
                    < 0
                || cs_addrmap_put(&index, key, (uint32_t)*ngroups) < 0) {
                cs_addrmap_free(&index);
                return -1;
            }
            at = (uint32_t)(*ngroups)++;
            probe.count = 0;
            probe.bytes = 0;
            (*groups)[at] = probe;
        }
        (*groups)[at].count++;
        (*groups)[at].bytes += s->nodes[id].size;
    }
    cs_addrmap_free(&index);
    if (*ngroups > 0) {
        qsort(*groups, *ngroups, sizeof(cs_unreached_group),
              compare_unreached);
    }
    return 0;
}
