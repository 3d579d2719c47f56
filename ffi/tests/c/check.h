/* A tiny test harness for the C tests: CHECK fails loudly with the location. */
#ifndef CORRAL_CHECK_H
#define CORRAL_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define CHECK_EQ_INT(actual, expected)                                            \
    do {                                                                          \
        long long check_a_ = (long long)(actual), check_e_ = (long long)(expected); \
        if (check_a_ != check_e_) {                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n",     \
                    __FILE__, __LINE__, #actual, #expected, check_a_, check_e_);  \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

#define RUN(test)                       \
    do {                                \
        test();                         \
        printf("ok   %s\n", #test);     \
        fflush(stdout);                 \
    } while (0)

#endif
