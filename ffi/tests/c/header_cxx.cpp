// The header from C++: compiles, and links only if the extern "C" guards
// keep the names unmangled.
#include <corral.h>

#include <cstdio>

static void count(void *opaque)
{
    ++*static_cast<int *>(opaque);
    corral_co_yield();
    ++*static_cast<int *>(opaque);
}

int main()
{
    int steps = 0;
    corral_co_t *co = corral_co_create(count, &steps);
    if (co == nullptr || corral_co_enter(co) != 0 || corral_co_enter(co) != 0 || steps != 2 ||
        !corral_co_is_terminated(co)) {
        std::fprintf(stderr, "header_cxx: C++ round trip failed\n");
        return 1;
    }
    std::printf("ok   header from C++ (extern \"C\" linkage)\n");
    return 0;
}
