/* graph.h - who holds what.
 *
 * After the census, cs_graph_build() answers "through which names is each
 * object reachable?":
 *
 *   - an index from address to object (cs_idset);
 *   - a breadth-first search from the roots a user can name: the modules
 *     of sys.modules, then the locals of every thread's running frames.
 *     Each object reached records its holder and its *pattern*: the path
 *     from its root with the parts that vary between siblings generalised
 *     (list and set positions, the keys of data dicts), so that the
 *     100,000 objects in `app.Profiler.results[0..99999]` share one
 *     pattern, `app.Profiler.results[*]`.  Names stay: attributes,
 *     globals, class attributes, slots, closure variables.  Breadth-first
 *     gives each object its shortest path, the one a person would name;
 *   - the holder groups: objects counted by (type, pattern), so that the
 *     top holders of any type are one lookup away.
 *
 * Objects the search does not reach (held only by C code, a reference
 * cycle awaiting collection, or a leaked reference) are explained by
 * walking their referrers upwards.  cs_graph_build_unreached() makes the
 * reverse index they need, on demand: one more pass over every
 * reference, keeping only those that point to an unreached object (a
 * small set, whose address index fits in the cache).  Climbing from an
 * unreached object meets only unreached objects until it stops at a
 * reached one, so that index is all it needs.  The referrers of one
 * object of any kind (--held-by) cost a pass of their own
 * (cs_graph_referrers_of).
 */
#ifndef PYLEAKHUNT_CENSUS_GRAPH_H
#define PYLEAKHUNT_CENSUS_GRAPH_H

#include "objects.h"
#include "scanner.h"

/* graph.parent of an object reached directly from a root. */
#define CS_ROOT (UINT32_MAX - 1)

typedef struct {
    uint32_t parent; /* the holder's pattern, or CS_NONE for a root */
    uint32_t rep;    /* the first object met with this pattern */
    uint64_t aux;    /* as in cs_edge; 0 if generalised */
    uint64_t aux2;
    uint8_t edge;    /* cs_edge */
    uint8_t general; /* aux was generalised away ("[*]") */
} cs_pattern;

typedef struct {
    uint32_t type;
    uint32_t pattern; /* CS_NONE: not reached from any root */
    uint64_t count;
    uint64_t bytes;
} cs_group;

typedef struct cs_graph {
    cs_idset index;
    uint32_t *parent;  /* per object: holder object, CS_ROOT or CS_NONE */
    uint32_t *pattern; /* per object: pattern, or CS_NONE if unreached */
    uint64_t reached;

    cs_pattern *patterns;
    size_t npatterns;
    size_t patterns_cap;
    uint32_t *pattern_slots; /* interning: pattern number + 1 */
    size_t pattern_mask;
    int generalize_all; /* too many patterns: generalise everything new */

    cs_group *groups; /* sorted by type, then count (biggest first) */
    size_t ngroups;
    uint32_t *type_groups; /* per type: its first group (ntypes + 1) */

    /* The unreached objects, by type: unreached[type_start[t] ..
       type_start[t + 1]] are the unreached objects of type t. */
    uint32_t *unreached;
    uint64_t *unreached_addr; /* their addresses, for unreached_index */
    size_t nunreached;
    cs_idset unreached_index; /* address -> position in unreached[] */
    uint32_t *type_start;
    /* Their referrers (compressed rows): those of unreached[k] are
       rev[rev_start[k] .. rev_start[k + 1]], object numbers.  NULL until
       cs_graph_build_unreached(). */
    uint32_t *rev_start;
    uint32_t *rev;
} cs_graph;

/* Builds the index, the search and the holder groups (once).  Returns 0,
   or -1 with s->error set. */
int cs_graph_build(cs_scanner *s);

/* Builds the index of unreached objects and their referrers (once).
   Returns 0, or -1 with s->error. */
int cs_graph_build_unreached(cs_scanner *s);

/* Stores in out[] the first `max` objects that refer to object `id`;
   returns how many.  A pass over every reference. */
size_t cs_graph_referrers_of(cs_scanner *s, uint32_t id, uint32_t *out,
                             size_t max);

void cs_graph_free(cs_scanner *s);

/* The object at `addr`, or CS_NONE. */
uint32_t cs_graph_find(cs_scanner *s, uint64_t addr);

/* The exact edge by which object `parent` refers to object `child`;
   returns 0, or -1 if it does not (any more). */
int cs_graph_edge(cs_scanner *s, uint32_t parent, uint32_t child,
                  cs_edge *edge, uint64_t *aux, uint64_t *aux2);

/* How an unreached object is held, found by following first referrers
   upwards from it. */
typedef enum {
    CS_END_REACHED = 0, /* up to an object the search reached */
    CS_END_NO_REFERRER, /* up to an object nothing refers to */
    CS_END_CYCLE,       /* round a reference cycle */
    CS_END_TOO_DEEP,    /* still going after `max` steps */
} cs_chain_end;

/* Follows first referrers from object `start` for at most `max` steps,
   storing the objects met (start first) in chain[].  Returns how many,
   and the reason it stopped in *end.  Needs cs_graph_build_unreached(). */
size_t cs_graph_climb(cs_scanner *s, uint32_t start, uint32_t *chain,
                      size_t max, cs_chain_end *end);

/* The longest chain climbed from one unreached object. */
#define CS_MAX_CLIMB 64

/* Unreached objects of one type that climb the same way: same end, same
   first referrer type, same place reached (a pattern) or same top type. */
typedef struct {
    cs_chain_end end;
    uint32_t first_type; /* type of the first referrer, or CS_NONE */
    uint32_t last;       /* pattern (reached) or type of the top object */
    uint64_t count;
    uint64_t bytes;
    uint32_t rep; /* the first object of the group */
} cs_unreached_group;

/* Groups the unreached objects of type number `type` into *groups (a
   malloc'ed array of *ngroups, most objects first; the caller frees it).
   Returns 0, or -1 if out of memory.  Needs cs_graph_build_unreached(). */
int cs_graph_group_unreached(cs_scanner *s, uint32_t type,
                             cs_unreached_group **groups, size_t *ngroups);

#endif
